namespace TcStudio.WorkspaceDatabases;

/// <summary>A draft's name ("name" or "schema.name", validated by the API) split for catalog lookups.</summary>
public readonly record struct ProcedureName(string? Schema, string Name)
{
    public static ProcedureName Parse(string qualified)
    {
        var dot = qualified.IndexOf('.');
        return dot < 0 ? new ProcedureName(null, qualified) : new ProcedureName(qualified[..dot], qualified[(dot + 1)..]);
    }

    public string SchemaOr(string defaultSchema) => Schema ?? defaultSchema;

    public override string ToString() => Schema is null ? Name : $"{Schema}.{Name}";
}
