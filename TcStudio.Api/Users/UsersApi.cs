using TcStudio.Api.Activities;
using TcStudio.Api.Auth;

namespace TcStudio.Api.Users;

public sealed record UserResponse(Guid Id, string Username, string? DisplayName, string? Email, string Role, bool IsActive,
    DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt)
{
    /// <summary>In lists: the user's ETag, for If-Match on a later write without reading it first (single reads send the header).</summary>
    [System.Text.Json.Serialization.JsonPropertyName("etag"),
        System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public string? ETag { get; init; }
}

public sealed record CreateUserRequest(string Username, string Password, string Role, string? Email = null, string? DisplayName = null);

/// <summary>PATCH: absent (or null) fields stay as they are; an empty displayName or email clears it.</summary>
public sealed record UpdateUserRequest(string? DisplayName = null, string? Email = null, string? Role = null, bool? IsActive = null);

/// <summary>A user changing their own password gives the current one; an Admin resetting someone else's does not.</summary>
public sealed record ChangePasswordRequest(string NewPassword, string? CurrentPassword = null);

public static class UsersApi
{
    public const int PasswordMinLength = 8;
    public const int PasswordMaxLength = 1024;

    public static RouteGroupBuilder MapUsersApi(this RouteGroupBuilder api)
    {
        var users = api.MapGroup("/users").WithTags("Users");
        users.MapGet("/", ListUsers).RequireAuthorization(AuthenticationSetup.SystemAdminPolicy)
            .WithSummary("Every user (system Admin only).");
        users.MapGet("/{id:guid}", GetUser).WithSummary("One user: system Admin, or the user themself.");
        users.MapPost("/", CreateUser).RequireAuthorization(AuthenticationSetup.SystemAdminPolicy).SupportsIdempotencyKeys()
            .WithSummary("Create a user (system Admin only).");
        users.MapPatch("/{id:guid}", UpdateUser).SupportsIdempotencyKeys().WithPreconditions()
            .WithSummary("Change a user. Users change only their own displayName and email; role and isActive are for a system Admin.");
        users.MapDelete("/{id:guid}", DeleteUser).RequireAuthorization(AuthenticationSetup.SystemAdminPolicy).SupportsIdempotencyKeys()
            .WithPreconditions()
            .WithSummary("Soft-delete a user (system Admin only): they cannot sign in, their tokens stop working, the username stays reserved.");
        users.MapPut("/{id:guid}/password", ChangePassword).SupportsIdempotencyKeys().WithPreconditions()
            .WithSummary("Change a password: your own (give the current one), or anyone's as a system Admin. Revokes the user's tokens.");
        return api;
    }

    public static async Task<Results<Ok<PagedList<UserResponse>>, ValidationProblem>> ListUsers(
        [AsParameters] PageRequest paging, TcStudioDbContext db, HttpRequest request, CancellationToken cancellationToken)
    {
        if (paging.Validate() is { Any: true } errors) return errors.ToProblem();

        var total = await db.Users.CountAsync(cancellationToken);
        var items = await db.Users.AsNoTracking().OrderBy(u => u.Username).ThenBy(u => u.Id).Skip(paging.Skip).Take(paging.Size)
            .Select(u => new UserResponse(u.Id, u.Username, u.DisplayName, u.Email, u.Role!.Name, u.IsActive, u.CreatedAt, u.UpdatedAt)
            {
                ETag = ETags.From(u.Version),
            })
            .ToListAsync(cancellationToken);
        return TypedResults.Ok(paging.ToPage(items, total, request));
    }

    public static async Task<Results<Ok<UserResponse>, ProblemHttpResult>> GetUser(Guid id, HttpContext http, TcStudioDbContext db)
    {
        if (!http.User.IsSystemAdmin() && id != http.User.UserId()) return Problems.Forbidden("Only a system Admin may read other users.");

        var row = await LoadAsync(db, id, http.RequestAborted);
        if (row is null) return Problems.NotFound("The user");
        http.Response.Headers.ETag = ETags.From(row.Version);
        return TypedResults.Ok(row.User);
    }

    public static async Task<Results<Created<UserResponse>, ValidationProblem, ProblemHttpResult>> CreateUser(
        CreateUserRequest request, HttpContext http, TcStudioDbContext db)
    {
        var errors = new FieldErrors()
            .Pattern("username", request.Username, FieldErrors.Username(), "3–64 letters, digits, '.', '_' or '-'")
            .OneOf("role", request.Role, Role.All);
        ValidatePassword(errors, "password", request.Password);
        ValidateProfile(errors, request.DisplayName, request.Email);
        if (errors.Any) return errors.ToProblem();

        var roleId = await db.Roles.Where(r => r.Name == request.Role).Select(r => (Guid?)r.Id).SingleOrDefaultAsync(http.RequestAborted);
        if (roleId is null) return new FieldErrors().Add("role", $"Role '{request.Role}' does not exist.").ToProblem();

        var user = new User
        {
            Username = request.Username,
            PasswordHash = PasswordHashing.Hash(request.Password),
            RoleId = roleId.Value,
            DisplayName = EmptyAsNull(request.DisplayName?.Trim()),
            Email = EmptyAsNull(request.Email?.Trim()),
        };
        db.Users.Add(user);
        db.AddActivity(null, http.User.UserId(), "user.created", EntityTypes.User, user.Id,
            new { user.Username, role = request.Role });
        await db.SaveChangesAsync(http.RequestAborted); // a taken username or email → 23505 → 409 naming the field

        http.Response.Headers.ETag = ETags.From(user.Version);
        return TypedResults.Created($"/api/users/{user.Id}", new UserResponse(user.Id, user.Username, user.DisplayName, user.Email,
            request.Role, user.IsActive, user.CreatedAt, user.UpdatedAt));
    }

    public static async Task<Results<Ok<UserResponse>, ValidationProblem, ProblemHttpResult>> UpdateUser(
        Guid id, UpdateUserRequest request, HttpContext http, TcStudioDbContext db, UserSessions sessions)
    {
        var isAdmin = http.User.IsSystemAdmin();
        if (!isAdmin && id != http.User.UserId()) return Problems.Forbidden("Only a system Admin may change other users.");
        if (!isAdmin && (request.Role is not null || request.IsActive is not null))
        {
            return Problems.Forbidden("Only a system Admin may change a user's role or active flag.");
        }

        var errors = new FieldErrors().OneOf("role", request.Role, Role.All, required: false);
        ValidateProfile(errors, request.DisplayName, request.Email);
        if (errors.Any) return errors.ToProblem();

        // Lock the active Admins first, so two requests cannot each remove "the other" last Admin.
        var activeAdmins = request.Role is not null and not Role.Admin || request.IsActive == false
            ? await LockActiveAdminIdsAsync(db, http.RequestAborted)
            : null;

        var found = await db.Users.Where(u => u.Id == id).Select(u => new { User = u, Role = u.Role!.Name })
            .SingleOrDefaultAsync(http.RequestAborted);
        if (found is null) return Problems.NotFound("The user");
        var (user, role) = (found.User, found.Role);
        if (ETags.CheckPreconditions(http.Request, user.Version, "user") is { } refused) return refused;

        var newRole = request.Role ?? role;
        var newActive = request.IsActive ?? user.IsActive;
        var stopsBeingAdmin = role == Role.Admin && user.IsActive && (newRole != Role.Admin || !newActive);
        if (stopsBeingAdmin && activeAdmins is not null && activeAdmins.All(a => a == user.Id))
        {
            return Problems.Conflict("This is the last active system Admin; make another user an Admin first.",
                request.Role is null ? "isActive" : "role",
                ErrorCodes.UserLastAdmin);
        }

        var changed = new List<string>();
        if (request.DisplayName is not null)
        {
            var displayName = EmptyAsNull(request.DisplayName.Trim());
            if (displayName != user.DisplayName) { user.DisplayName = displayName; changed.Add("displayName"); }
        }
        if (request.Email is not null)
        {
            var email = EmptyAsNull(request.Email.Trim());
            if (email != user.Email) { user.Email = email; changed.Add("email"); }
        }
        if (newRole != role)
        {
            user.RoleId = await db.Roles.Where(r => r.Name == newRole).Select(r => r.Id).SingleAsync(http.RequestAborted);
            changed.Add("role");
        }
        if (newActive != user.IsActive)
        {
            user.IsActive = newActive;
            changed.Add("isActive");
            // Deactivation revokes every token at once; reactivation does not bring old tokens back.
            user.SecurityStamp = Guid.NewGuid();
        }

        if (changed.Count > 0)
        {
            db.AddActivity(null, http.User.UserId(), "user.updated", EntityTypes.User, user.Id, new
            {
                user.Username,
                changed,
                role = changed.Contains("role") ? newRole : null,
                isActive = changed.Contains("isActive") ? (bool?)newActive : null,
            });
            await db.SaveChangesAsync(http.RequestAborted);
            if (changed.Contains("role") || changed.Contains("isActive")) ForgetSessionsAfterCommit(http, sessions, user.Id);
        }

        http.Response.Headers.ETag = ETags.From(user.Version);
        return TypedResults.Ok(new UserResponse(user.Id, user.Username, user.DisplayName, user.Email, newRole, user.IsActive,
            user.CreatedAt, user.UpdatedAt));
    }

    public static async Task<Results<NoContent, ProblemHttpResult>> DeleteUser(
        Guid id, HttpContext http, TcStudioDbContext db, UserSessions sessions, TimeProvider clock, RequestRowSecurity rowSecurity)
    {
        var activeAdmins = await LockActiveAdminIdsAsync(db, http.RequestAborted);
        var user = await db.Users.SingleOrDefaultAsync(u => u.Id == id, http.RequestAborted);
        if (user is null) return Problems.NotFound("The user");
        if (ETags.CheckPreconditions(http.Request, user.Version, "user") is { } refused) return refused;
        if (activeAdmins.Contains(user.Id) && activeAdmins.Count == 1)
        {
            return Problems.Conflict("This is the last active system Admin; make another user an Admin first.", code: ErrorCodes.UserLastAdmin);
        }

        // Their memberships go with them, so member lists and counts stay honest; a workspace whose only Owner they
        // are would be left without one, so that is refused until ownership is handed on. Memberships span workspaces,
        // which row-level security keeps apart: they are read through memberships_of_user (SECURITY DEFINER), and the
        // workspaces are locked (then read again) so a concurrent change of their owners cannot slip between the check
        // and the delete.
        var workspaceIds = (await MembershipsOfUserAsync(db, id, http.RequestAborted)).Select(m => m.WorkspaceId).ToArray();
        await db.Database.ExecuteSqlAsync($"SELECT 1 FROM workspaces WHERE id = ANY({workspaceIds}) ORDER BY id FOR NO KEY UPDATE",
            http.RequestAborted);
        var memberships = await MembershipsOfUserAsync(db, id, http.RequestAborted);
        var soleOwnerOf = memberships
            .Where(m => !m.WorkspaceDeleted && m.Role == WorkspaceRoles.Owner && m.OtherOwners == 0)
            .Select(m => m.Slug).Order(StringComparer.Ordinal).ToList();
        if (soleOwnerOf.Count > 0)
        {
            return Problems.Conflict(
                $"The user is the only Owner of {string.Join(", ", soleOwnerOf.Select(s => $"'{s}'"))}; make someone else an Owner first.",
                code: ErrorCodes.MemberLastOwner);
        }

        // Each membership is removed inside its own workspace (its row-level-security setting), with its activity.
        var actorId = http.User.UserId();
        foreach (var membership in memberships)
        {
            rowSecurity.EnterWorkspace(membership.WorkspaceId);
            await db.WorkspaceMembers.Where(m => m.WorkspaceId == membership.WorkspaceId && m.UserId == id).ExecuteDeleteAsync(http.RequestAborted);
            db.AddActivity(membership.WorkspaceId, actorId, "member.removed", EntityTypes.Member, user.Id,
                new { user.Username, membership.Role, reason = "user deleted" });
            await db.SaveChangesAsync(http.RequestAborted);
        }
        user.DeletedAt = clock.GetUtcNow();
        user.SecurityStamp = Guid.NewGuid();
        db.AddActivity(null, actorId, "user.deleted", EntityTypes.User, user.Id, new { user.Username });
        await db.SaveChangesAsync(http.RequestAborted);
        ForgetSessionsAfterCommit(http, sessions, user.Id);
        return TypedResults.NoContent();
    }

    public static async Task<Results<NoContent, ValidationProblem, ProblemHttpResult>> ChangePassword(
        Guid id, ChangePasswordRequest request, HttpContext http, TcStudioDbContext db, UserSessions sessions, LoginThrottle throttle)
    {
        var isSelf = id == http.User.UserId();
        if (!isSelf && !http.User.IsSystemAdmin()) return Problems.Forbidden("Only a system Admin may change other users' passwords.");

        var errors = new FieldErrors();
        ValidatePassword(errors, "newPassword", request.NewPassword);
        if (isSelf && string.IsNullOrEmpty(request.CurrentPassword))
        {
            errors.Add("currentPassword", "'currentPassword' is required to change your own password.");
        }
        else if (request.CurrentPassword is { Length: > PasswordMaxLength })
        {
            errors.Add("currentPassword", $"'currentPassword' must be at most {PasswordMaxLength} characters long.");
        }
        if (errors.Any) return errors.ToProblem();

        var user = await db.Users.SingleOrDefaultAsync(u => u.Id == id, http.RequestAborted);
        if (user is null) return Problems.NotFound("The user");
        if (ETags.CheckPreconditions(http.Request, user.Version, "user") is { } refused) return refused;

        if (isSelf)
        {
            // Guessing the current password through this endpoint is throttled like guessing it at sign-in.
            var address = ClientAddress.Of(http);
            if (await throttle.BeginAttemptAsync(user.Username, address, http.RequestAborted) is { } wait)
            {
                http.Response.Headers.RetryAfter = Math.Ceiling(wait.TotalSeconds).ToString("0");
                return ErrorCodes.Problem(ErrorCodes.AuthRateLimited, StatusCodes.Status429TooManyRequests,
                    "Too many failed attempts.", "Wait before trying again.");
            }
            var currentPasswordMatches = false;
            try
            {
                currentPasswordMatches = PasswordHashing.Verify(user.PasswordHash, request.CurrentPassword!, out _);
            }
            finally
            {
                await throttle.EndAttemptAsync(user.Username, address, succeeded: currentPasswordMatches);
            }
            if (!currentPasswordMatches)
            {
                return new FieldErrors().Add("currentPassword", "The current password is wrong.").ToProblem();
            }
        }

        user.PasswordHash = PasswordHashing.Hash(request.NewPassword);
        user.SecurityStamp = Guid.NewGuid();
        db.AddActivity(null, http.User.UserId(), "user.password_changed", EntityTypes.User, user.Id,
            new { user.Username, resetByAdmin = !isSelf });
        await db.SaveChangesAsync(http.RequestAborted);
        ForgetSessionsAfterCommit(http, sessions, user.Id);
        return TypedResults.NoContent();
    }

    private static void ValidatePassword(FieldErrors errors, string field, string? password)
    {
        if (string.IsNullOrEmpty(password)) errors.Add(field, $"'{field}' is required.");
        else if (password.Length is < PasswordMinLength or > PasswordMaxLength)
            errors.Add(field, $"'{field}' must be {PasswordMinLength} to {PasswordMaxLength} characters long.");
        else if (password.Contains('\0')) errors.Add(field, $"'{field}' must not contain NUL characters.");
    }

    private static void ValidateProfile(FieldErrors errors, string? displayName, string? email)
    {
        errors.Name("displayName", displayName, User.DisplayNameMaxLength);
        errors.Text("email", email, User.EmailMaxLength);
        if (!string.IsNullOrEmpty(email) && email.Length <= User.EmailMaxLength && !FieldErrors.Email().IsMatch(email.Trim()))
        {
            errors.Add("email", "'email' must be an email address.");
        }
    }

    private static string? EmptyAsNull(string? value) => string.IsNullOrEmpty(value) ? null : value;

    private sealed record UserMembership(Guid WorkspaceId, string Slug, string Role, bool WorkspaceDeleted, int OtherOwners);

    private static Task<List<UserMembership>> MembershipsOfUserAsync(TcStudioDbContext db, Guid userId, CancellationToken cancellationToken) =>
        db.Database.SqlQuery<UserMembership>($"SELECT * FROM memberships_of_user({userId})").ToListAsync(cancellationToken);

    /// <summary>
    /// The ids of the active system Admins, locked until the transaction ends. A concurrent request that wants to
    /// demote, deactivate or delete an Admin waits here and then sees the outcome of this one.
    /// </summary>
    private static Task<List<Guid>> LockActiveAdminIdsAsync(TcStudioDbContext db, CancellationToken cancellationToken)
    {
        RequestUnitOfWork.RequireTransaction(db.Database, "The last-Admin check");
        return db.Database.SqlQuery<Guid>($"""
            SELECT u.id AS "Value" FROM users u JOIN roles r ON r.id = u.role_id
            WHERE r.name = {Role.Admin} AND u.is_active AND u.deleted_at IS NULL
            ORDER BY u.id FOR UPDATE OF u
            """).ToListAsync(cancellationToken);
    }

    /// <summary>
    /// Evicts the user's cached session once the transaction has committed (the response starts after the
    /// transaction filter commits), so their existing tokens stop working with the very next request.
    /// </summary>
    private static void ForgetSessionsAfterCommit(HttpContext http, UserSessions sessions, Guid userId)
    {
        sessions.Forget(userId);
        http.Response.OnStarting(() =>
        {
            sessions.Forget(userId);
            return Task.CompletedTask;
        });
    }

    private sealed record UserRow(UserResponse User, uint Version);

    private static async Task<UserRow?> LoadAsync(TcStudioDbContext db, Guid id, CancellationToken cancellationToken) =>
        await db.Users.AsNoTracking().Where(u => u.Id == id)
            .Select(u => new UserRow(
                new UserResponse(u.Id, u.Username, u.DisplayName, u.Email, u.Role!.Name, u.IsActive, u.CreatedAt, u.UpdatedAt),
                u.Version))
            .SingleOrDefaultAsync(cancellationToken);
}
