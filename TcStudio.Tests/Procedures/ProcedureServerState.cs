using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Procedures;

/// <summary>What a procedure test inspects behind the API: statements still running, a system step made to fail.</summary>
public static class ProcedureServerState
{
    /// <summary>
    /// How many statements calling <paramref name="call"/> (as it appears in the SQL text, e.g. <c>"nap"()</c>) are
    /// active in the workspace database, the asking session aside.
    /// </summary>
    public static Task<long> RunningStatementsAsync(this WorkspaceApiFixture api, string database, string call) =>
        api.WorkspaceScalarAsync<long>(database,
            $"SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%{call}%' AND state = 'active' AND pid <> pg_backend_pid()");

    /// <summary>The marker that makes the system database refuse to record a publish, while a refusal is installed.</summary>
    public const string FailTheSystemStep = "fail-the-system-step";

    /// <summary>
    /// Makes the system database refuse to record publishes whose SQL carries <see cref="FailTheSystemStep"/> (a trigger on
    /// stored_procedures), until the returned handle is disposed: the workspace side of a publish succeeds, the system
    /// side fails, and the test sees the compensation.
    /// </summary>
    public static async Task<IAsyncDisposable> RefuseRecordingPublishesAsync(this SystemDatabaseFixture database)
    {
        await database.ExecuteAsync($"""
            CREATE OR REPLACE FUNCTION test_refuse_publish() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.sql_published LIKE '%{FailTheSystemStep}%' THEN
                    RAISE EXCEPTION 'recording refused by the test' USING ERRCODE = 'P0001';
                END IF;
                RETURN NEW;
            END;
            $$;
            DROP TRIGGER IF EXISTS test_refuse_publish ON stored_procedures;
            CREATE TRIGGER test_refuse_publish BEFORE UPDATE ON stored_procedures FOR EACH ROW EXECUTE FUNCTION test_refuse_publish();
            """);
        return new Refusal(database);
    }

    private sealed class Refusal(SystemDatabaseFixture database) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync() => await database.ExecuteAsync("DROP TRIGGER IF EXISTS test_refuse_publish ON stored_procedures");
    }
}
