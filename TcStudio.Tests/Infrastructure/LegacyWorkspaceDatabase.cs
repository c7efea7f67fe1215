using Npgsql;
using TcStudio.WorkspaceDatabases;
using TcStudio.WorkspaceDatabases.Postgres;

namespace TcStudio.Tests.Infrastructure;

/// <summary>
/// A PostgreSQL workspace database as the previous version made it (with a superuser deploy credential): roles per
/// database name (tcws_&lt;database&gt;_&lt;hash&gt;_owner|exec) with a password, the database owned by the owner role,
/// CONNECT revoked from PUBLIC, grants on public, the base schema applied as the owner role; no marker, no claim.
/// Optionally some data and a deployed function, to show a conversion keeps them.
/// </summary>
public static class LegacyWorkspaceDatabase
{
    public const string Password = "legacy-role-password";

    public static async Task CreateAsync(PostgresServer server, string database, bool withData = true)
    {
        var (owner, exec) = PostgresWorkspaceRoles.Legacy(database);
        await server.ExecuteAsync($"""
            CREATE ROLE "{owner}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT PASSWORD '{Password}';
            COMMENT ON ROLE "{owner}" IS 'TC Studio workspace database {database}: owner role';
            CREATE ROLE "{exec}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT PASSWORD '{Password}';
            COMMENT ON ROLE "{exec}" IS 'TC Studio workspace database {database}: execute role';
            """);
        await server.ExecuteAsync($"CREATE DATABASE {database} OWNER \"{owner}\"");
        await server.ExecuteAsync($"""
            REVOKE ALL ON DATABASE {database} FROM PUBLIC;
            GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {database} TO "{owner}";
            GRANT CONNECT, TEMPORARY ON DATABASE {database} TO "{exec}";
            """);
        await using var connection = new NpgsqlConnection(server.ConnectionString(database, pooling: false));
        await connection.OpenAsync();
        await Execute(connection, $"""
            GRANT USAGE, CREATE ON SCHEMA public TO "{owner}";
            GRANT USAGE ON SCHEMA public TO "{exec}";
            ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA public GRANT EXECUTE ON ROUTINES TO "{exec}";
            ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{exec}";
            ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO "{exec}";
            SET ROLE "{owner}";
            """);
        foreach (var migration in WorkspaceMigrations.For("postgres"))
        {
            await Execute(connection, migration.Up);
            await Execute(connection, $"INSERT INTO tcstudio.tcstudio_schema_migrations (version, name, checksum, duration_ms) "
                + $"VALUES ({migration.Version}, '{migration.Name}', '{migration.Checksum}', 1)");
        }
        if (withData)
        {
            await Execute(connection, """
                CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL);
                INSERT INTO orders VALUES (1, 'tea'), (2, 'scones');
                CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM orders $$;
                INSERT INTO tcstudio.procedure_deployments (procedure, checksum, deployed_by) VALUES ('order_count', repeat('a', 64), 'admin');
                """);
        }
        await Execute(connection, "RESET ROLE");
    }

    private static async Task Execute(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }
}
