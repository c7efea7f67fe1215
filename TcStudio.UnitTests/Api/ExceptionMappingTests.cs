using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using TcStudio.Api.Infrastructure;
using TcStudio.WorkspaceDatabases;

namespace TcStudio.UnitTests.Api;

/// <summary>
/// The one exception → problem mapping (ApiExceptionHandler), by type and SQLSTATE: the status each failure answers
/// with. The problems' bodies are checked through HTTP by the integration tests.
/// </summary>
public sealed class ExceptionMappingTests
{
    [Theory]
    [InlineData(PostgresErrorCodes.UniqueViolation, 409)]
    [InlineData(PostgresErrorCodes.ForeignKeyViolation, 409)]
    [InlineData(PostgresErrorCodes.CheckViolation, 400)]
    [InlineData(PostgresErrorCodes.NotNullViolation, 400)]
    [InlineData(PostgresErrorCodes.StringDataRightTruncation, 400)]
    [InlineData(PostgresErrorCodes.InvalidTextRepresentation, 400)]
    [InlineData(PostgresErrorCodes.NumericValueOutOfRange, 400)]
    [InlineData(PostgresErrorCodes.SerializationFailure, 409)]
    [InlineData(PostgresErrorCodes.DeadlockDetected, 409)]
    [InlineData(PostgresErrorCodes.LockNotAvailable, 503)]
    [InlineData(PostgresErrorCodes.QueryCanceled, 503)]
    [InlineData(PostgresErrorCodes.ConnectionFailure, 503)]
    [InlineData(PostgresErrorCodes.TooManyConnections, 503)]
    [InlineData(PostgresErrorCodes.AdminShutdown, 503)]
    [InlineData(PostgresErrorCodes.CannotConnectNow, 503)]
    [InlineData(PostgresErrorCodes.SyntaxError, 500)] // our own SQL at fault: never blamed on the caller
    [InlineData(PostgresErrorCodes.InsufficientPrivilege, 500)]
    public void System_database_errors_map_by_sqlstate(string sqlState, int status)
    {
        var error = new PostgresException("message text is never read", "ERROR", "ERROR", sqlState);

        Assert.Equal(status, ApiExceptionHandler.StatusOf(error));
        // Wrapped as EF Core wraps it on SaveChanges: found all the same.
        Assert.Equal(status, ApiExceptionHandler.StatusOf(new DbUpdateException("saving", error)));
    }

    public static TheoryData<Exception, int> OtherFailures => new()
    {
        { new DbUpdateConcurrencyException("changed"), 412 },
        { new JsonException("bad json", "$.name", 1, 10), 400 },
        { new BadHttpRequestException("too large", StatusCodes.Status413PayloadTooLarge), 413 },
        { new BadHttpRequestException("bad body", StatusCodes.Status400BadRequest, new JsonException("bad", "$.x", 1, 1)), 400 },
        { new OperationCanceledException(), 503 },
        { new NpgsqlException("cannot connect", new System.Net.Sockets.SocketException(111)), 503 },
        { new System.Text.DecoderFallbackException("not utf-8"), 400 },
        { new InvalidOperationException("a bug of ours"), 500 },
    };

    [Theory]
    [MemberData(nameof(OtherFailures))]
    public void Framework_failures_map_by_type(Exception error, int status) =>
        Assert.Equal(status, ApiExceptionHandler.StatusOf(error));

    public static TheoryData<Exception, int> WorkspaceFailures => new()
    {
        { new WorkspaceTargetException("no such database", "dev", "databaseName"), 409 },
        { new WorkspaceOwnershipException("claimed by another", "dev"), 409 },
        { new WorkspaceAdminOnlyException("admins only", "dev"), 403 },
        { new WorkspaceServerNotReadyException("not bootstrapped", "dev"), 503 },
        { new WorkspaceDatabaseUnavailableException("down", "dev", TimeSpan.FromSeconds(2), circuitOpen: true), 503 },
        { new WorkspaceSchemaException("behind", "dev"), 409 },
        { new WorkspaceSqlException("division by zero", "dev", "22012", 3, new InvalidOperationException()), 422 },
        { new WorkspaceTimeoutException("too long", "dev"), 504 },
        { new WorkspaceParameterException("who", "missing", "dev"), 400 },
    };

    [Theory]
    [MemberData(nameof(WorkspaceFailures))]
    public void Workspace_database_failures_map_by_type_and_are_never_read_as_the_system_databases(Exception error, int status)
    {
        Assert.Equal(status, ApiExceptionHandler.StatusOf(error));
    }

    [Fact]
    public void A_workspace_failure_that_carries_a_driver_error_keeps_its_own_status()
    {
        // A unique violation inside a workspace database is the workspace's SQL error (422), not a system conflict (409).
        var inner = new PostgresException("duplicate key", "ERROR", "ERROR", PostgresErrorCodes.UniqueViolation);
        Assert.Equal(422, ApiExceptionHandler.StatusOf(new WorkspaceSqlException("duplicate key", "dev", inner.SqlState, 1, inner)));
    }
}
