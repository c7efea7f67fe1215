using Microsoft.AspNetCore.Http;
using TcStudio.Api.Infrastructure;
using TcStudio.Tests.Infrastructure;

namespace TcStudio.Tests.Api;

/// <summary>The request's unit of work: which transaction scope a route gets, and the guard of helpers that lock rows.</summary>
public sealed class RequestUnitOfWorkTests(SystemDatabaseFixture database) : IClassFixture<SystemDatabaseFixture>
{
    [Fact]
    public async Task A_row_lock_helper_refuses_to_run_outside_the_requests_transaction()
    {
        await using var db = database.CreateDbContext();

        var refused = Assert.Throws<InvalidOperationException>(() => RequestUnitOfWork.RequireTransaction(db.Database, "The last-Owner check"));
        Assert.Contains("The last-Owner check needs the request's transaction", refused.Message);

        await using var transaction = await db.Database.BeginTransactionAsync();
        RequestUnitOfWork.RequireTransaction(db.Database, "The last-Owner check"); // inside one: nothing to say
    }

    [Theory]
    [InlineData("GET", null, SystemTransactionScope.Statement)]
    [InlineData("HEAD", null, SystemTransactionScope.Statement)]
    [InlineData("POST", null, SystemTransactionScope.Request)]
    [InlineData("PATCH", null, SystemTransactionScope.Request)]
    [InlineData("DELETE", null, SystemTransactionScope.Request)]
    [InlineData("POST", SystemTransactionScope.Save, SystemTransactionScope.Save)]
    [InlineData("GET", SystemTransactionScope.Save, SystemTransactionScope.Save)]
    public void Reads_run_per_statement_writes_in_one_transaction_unless_the_route_waits_on_a_workspace_database(
        string method, SystemTransactionScope? declared, SystemTransactionScope expected)
    {
        var http = new DefaultHttpContext();
        http.Request.Method = method;
        var metadata = declared is { } scope ? new EndpointMetadataCollection(new SystemTransaction(scope)) : EndpointMetadataCollection.Empty;
        http.SetEndpoint(new Endpoint(_ => Task.CompletedTask, metadata, "test"));

        Assert.Equal(expected, RequestUnitOfWork.ScopeOf(http));
    }
}
