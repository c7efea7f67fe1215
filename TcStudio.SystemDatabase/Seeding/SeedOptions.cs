namespace TcStudio.SystemDatabase.Seeding;

/// <summary>
/// The configuration section <c>Seed</c>. Outside Development the passwords must be configured, or seeding refuses
/// to create the users; in Development the documented defaults below apply.
/// </summary>
public sealed class SeedOptions
{
    public const string SectionName = "Seed";

    /// <summary>Documented Development-only defaults (README). Never used in any other environment.</summary>
    public const string DevelopmentAdminPassword = "admin-dev-password";
    public const string DevelopmentUserPassword = "user-dev-password";

    public const string DefaultDevDatabaseName = "twsbp_dev";

    public string? AdminPassword { get; set; }

    /// <summary>The database of the seeded twsbp/dev environment (default twsbp_dev); tests give each run its own.</summary>
    public string? DevDatabaseName { get; set; }
    public string? UserPassword { get; set; }
}
