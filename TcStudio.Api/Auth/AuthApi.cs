using System.ComponentModel;

namespace TcStudio.Api.Auth;

public sealed record TokenRequest(string Username, string Password);

public sealed record TokenResponse(string AccessToken, DateTimeOffset ExpiresAt, string TokenType = "Bearer");

public static class AuthApi
{
    private sealed record SignInRow(Guid Id, string Username, string PasswordHash, bool IsActive, Guid SecurityStamp, string Role);

    /// <summary>Verified against when the username is unknown, so a miss costs what a hit costs (no timing hint).</summary>
    private static readonly string DecoyHash = PasswordHashing.Hash(Guid.NewGuid().ToString());

    public static RouteGroupBuilder MapAuthApi(this RouteGroupBuilder api)
    {
        var auth = api.MapGroup("/auth").WithTags("Auth");
        // Per statement: verifying a password is deliberately slow CPU work, and must not hold a pooled connection
        // (and a transaction) open while it runs; a burst of sign-ins would drain the pool.
        auth.MapPost("/token", IssueToken).AllowAnonymous().IgnoresIdempotencyKeys().WithSystemTransaction(SystemTransactionScope.Statement)
            .WithSummary("Exchange a username and password for a bearer token.");
        return api;
    }

    [Description("Wrong credentials answer 401 without saying which part was wrong; repeated failures answer 429.")]
    public static async Task<Results<Ok<TokenResponse>, ProblemHttpResult, ValidationProblem>> IssueToken(
        TokenRequest request, HttpContext http, TcStudioDbContext db, TokenIssuer tokens, LoginThrottle throttle)
    {
        var errors = new FieldErrors()
            .Text("username", request.Username, User.UsernameMaxLength, required: true)
            .Text("password", request.Password, 1024, required: true);
        if (errors.Any) return errors.ToProblem();

        // Checked and recorded in one statement before the password is: a burst cannot get more guesses checked than
        // the limit. Unknown usernames are counted like known ones, so the limit says nothing about who exists.
        var address = ClientAddress.Of(http);
        if (await throttle.BeginAttemptAsync(request.Username, address, http.RequestAborted) is { } wait)
        {
            http.Response.Headers.RetryAfter = Math.Ceiling(wait.TotalSeconds).ToString("0");
            return ErrorCodes.Problem(ErrorCodes.AuthRateLimited, StatusCodes.Status429TooManyRequests,
                "Too many failed logins.", "Wait before trying again.");
        }

        SignInRow? user = null;
        try
        {
            user = await FindIfPasswordMatchesAsync(db, request, http.RequestAborted);
        }
        finally
        {
            // Whatever happened, an aborted request included: only a right password clears anything.
            await throttle.EndAttemptAsync(request.Username, address, succeeded: user is not null);
        }
        if (user is null)
        {
            return ErrorCodes.Problem(ErrorCodes.AuthInvalidCredentials, StatusCodes.Status401Unauthorized,
                "Invalid credentials.", "The username or password is wrong, or the account cannot sign in.");
        }

        var (token, expiresAt) = tokens.Issue(user.Id, user.Username, user.Role, user.SecurityStamp);
        return TypedResults.Ok(new TokenResponse(token, expiresAt));
    }

    /// <summary>The active user with this username and password, else null, at the same cost either way.</summary>
    private static async Task<SignInRow?> FindIfPasswordMatchesAsync(TcStudioDbContext db, TokenRequest request, CancellationToken cancellationToken)
    {
        var username = request.Username.ToLowerInvariant();
        var user = await db.Users.AsNoTracking()
            .Where(u => u.Username.ToLower() == username)
            .Select(u => new SignInRow(u.Id, u.Username, u.PasswordHash, u.IsActive, u.SecurityStamp, u.Role!.Name))
            .FirstOrDefaultAsync(cancellationToken);
        var passwordMatches = PasswordHashing.Verify(user?.PasswordHash ?? DecoyHash, request.Password, out _);
        return user is not null && passwordMatches && user.IsActive ? user : null;
    }
}
