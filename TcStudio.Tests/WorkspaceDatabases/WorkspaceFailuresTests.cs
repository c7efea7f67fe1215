using TcStudio.WorkspaceDatabases;

namespace TcStudio.Tests.WorkspaceDatabases;

/// <summary>What server messages look like once the connection's own principal is taken out.</summary>
public sealed class WorkspaceFailuresTests
{
    [Theory]
    [InlineData("invalid input syntax for type integer: \"tcws_acme_dev_1a2b3c_owner\"", "tcws_acme_dev_1a2b3c_owner",
        "invalid input syntax for type integer: \"<workspace role>\"")]
    [InlineData("permission denied for schema x (TCWS_ACME_DEV_1A2B3C_EXEC)", "tcws_acme_dev_1a2b3c_exec",
        "permission denied for schema x (<workspace role>)")]
    [InlineData("Login failed for user 'sa'. The usage of sa_backup is fine.", "sa",
        "Login failed for user '<workspace role>'. The usage of sa_backup is fine.")]
    [InlineData("nothing to hide", null, "nothing to hide")]
    public void Only_whole_names_are_replaced(string message, string? principal, string expected) =>
        Assert.Equal(expected, WorkspaceFailures.Scrub(message, principal));
}
