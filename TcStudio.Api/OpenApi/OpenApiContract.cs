using System.Reflection;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;
using TcStudio.Api.Auth;
using TcStudio.Api.Environments;
using TcStudio.Api.Members;
using TcStudio.Api.Procedures;
using TcStudio.Api.Users;
using TcStudio.Api.Workspaces;

namespace TcStudio.Api.OpenApi;

/// <summary>
/// What /openapi/v1.json promises a REST consumer, completed in one place from the endpoints' metadata (so endpoint
/// files only say what is theirs): the bearer scheme on every operation that needs a token, every path parameter
/// (group routes bind {slug} in <see cref="WorkspaceScopeFilter"/>, not in a handler parameter, so the generator
/// does not see it), an operationId from the handler's name, camelCase query names, tags with descriptions, the problem
/// responses each operation can give (application/problem+json with a stable <c>code</c>, docs/api.md), request
/// body examples, a license and a server URL without a trailing slash. OpenApiLintTests holds the result to
/// Redocly's recommended ruleset.
/// </summary>
public static partial class OpenApiContract
{
    public const string BearerScheme = "Bearer";
    public const string ProblemSchema = "ProblemDetails";
    public const string ProblemContentType = "application/problem+json";

    private static readonly Dictionary<string, string> TagDescriptions = new(StringComparer.Ordinal)
    {
        ["Auth"] = "Sign in: exchange a username and password for a bearer token (send it as `Authorization: Bearer …`).",
        ["Users"] = "User accounts (system Admins manage them; everyone may read and change their own).",
        ["Roles"] = "The system roles a user can have.",
        ["Workspaces"] = "Workspaces: the unit of membership, environments and procedures.",
        ["Members"] = "Who belongs to a workspace and with which workspace role.",
        ["Environments"] = "A workspace's databases (on registered servers) and their schema state.",
        ["Procedures"] = "Stored-procedure drafts, their validation, publishing to an environment and execution.",
        ["Activities"] = "A workspace's activity log (cursor-paged, newest first).",
        ["Events"] = "Live activity as server-sent events.",
        ["Database insights"] = "System Admins: the system database's size, slow queries, tables, indexes and long-running queries.",
    };

    /// <summary>A short, valid example for each request body (README and docs/api.md show the same ones).</summary>
    private static readonly Dictionary<Type, Func<JsonNode>> BodyExamples = new()
    {
        [typeof(TokenRequest)] = () => new JsonObject { ["username"] = "admin", ["password"] = "your-password" },
        [typeof(CreateUserRequest)] = () => new JsonObject
        {
            ["username"] = "dana", ["password"] = "a-long-password-1", ["role"] = "User", ["email"] = "dana@example.com", ["displayName"] = "Dana",
        },
        [typeof(UpdateUserRequest)] = () => new JsonObject { ["displayName"] = "Dana K.", ["isActive"] = true },
        [typeof(ChangePasswordRequest)] = () => new JsonObject { ["currentPassword"] = "a-long-password-1", ["newPassword"] = "a-longer-password-2" },
        [typeof(CreateWorkspaceRequest)] = () => new JsonObject { ["name"] = "Billing", ["slug"] = "billing",
            ["description"] = "Billing procedures" },
        [typeof(UpdateWorkspaceRequest)] = () => new JsonObject { ["description"] = "Billing and invoicing procedures" },
        [typeof(SetMemberRequest)] = () => new JsonObject { ["role"] = "Editor" },
        [typeof(CreateEnvironmentRequest)] = () => new JsonObject { ["name"] = "dev", ["server"] = "local", ["databaseName"] = "billing_dev",
            ["isProduction"] = false },
        [typeof(AdoptEnvironmentRequest)] = () => new JsonObject { ["server"] = "local", ["databaseName"] = "billing_legacy",
            ["isProduction"] = false },
        [typeof(UpdateEnvironmentRequest)] = () => new JsonObject { ["isProduction"] = true },
        [typeof(CreateProcedureRequest)] = () => new JsonObject
        {
            ["name"] = "get_invoice", ["sql"] = "CREATE PROCEDURE get_invoice(id integer) LANGUAGE sql AS $$ SELECT id $$",
        },
        [typeof(UpdateProcedureRequest)] = () => new JsonObject { ["sql"] = "CREATE PROCEDURE get_invoice(id integer) LANGUAGE "
            + "sql AS $$ SELECT id $$" },
        [typeof(ExecuteRequest)] = () => new JsonObject
        {
            ["parameters"] = new JsonObject { ["id"] = 42 }, ["timeoutSeconds"] = 30, ["maxRows"] = 1000,
        },
    };

    /// <summary>Passed to AddOpenApi (ApiDefaults).</summary>
    public static void Configure(OpenApiOptions options)
    {
        options.AddOperationTransformer(TransformOperation);
        options.AddDocumentTransformer(TransformDocument);
    }

    private static Task TransformDocument(OpenApiDocument document, OpenApiDocumentTransformerContext context, CancellationToken cancellationToken)
    {
        document.Info.Title = "TC Studio API";
        document.Info.Description = "Workspaces, environments and stored procedures. Errors are RFC 9457 problem details with a stable `code` "
            + "(docs/api.md lists them). Lists are `{items, page, pageSize, totalCount, next}` or `{items, nextCursor, next}`.";
        document.Info.License = new OpenApiLicense { Name = "Proprietary", Identifier = "LicenseRef-TcStudio-Proprietary" };

        foreach (var server in document.Servers ?? []) server.Url = server.Url?.TrimEnd('/');

        document.Components ??= new OpenApiComponents();
        document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
        document.Components.SecuritySchemes[BearerScheme] = new OpenApiSecurityScheme
        {
            Type = SecuritySchemeType.Http,
            Scheme = "bearer",
            BearerFormat = "JWT",
            Description = "The accessToken from POST /api/auth/token.",
        };
        document.Components.Schemas ??= new Dictionary<string, IOpenApiSchema>();
        document.Components.Schemas[ProblemSchema] = ProblemDetailsSchema();
        // Every problem response now points at ProblemDetails (which describes `errors` too).
        document.Components.Schemas.Remove("HttpValidationProblemDetails");

        var used = document.Paths.Values.SelectMany(p => p.Operations?.Values ?? Enumerable.Empty<OpenApiOperation>())
            .SelectMany(o => o.Tags ?? new HashSet<OpenApiTagReference>())
            .Select(t => t.Name).Where(n => n is not null).Distinct().ToList();
        document.Tags = new HashSet<OpenApiTag>(used.Select(name => new OpenApiTag
        {
            Name = name,
            Description = TagDescriptions.GetValueOrDefault(name!, name!),
        }));

        // Handler names are unique per feature, not across the API: disambiguate any repeat.
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var operation in document.Paths.Values.SelectMany(p => p.Operations?.Values ?? Enumerable.Empty<OpenApiOperation>()))
        {
            if (operation.OperationId is not { } id) continue;
            var unique = id;
            for (var n = 2; !seen.Add(unique); n++) unique = id + n;
            operation.OperationId = unique;
        }
        return Task.CompletedTask;
    }

    private static Task TransformOperation(OpenApiOperation operation, OpenApiOperationTransformerContext context,
        CancellationToken cancellationToken)
    {
        var description = context.Description;
        var metadata = description.ActionDescriptor.EndpointMetadata;
        var method = description.HttpMethod ?? "GET";
        var route = "/" + (description.RelativePath ?? "");

        operation.OperationId ??= OperationIdFor(metadata);

        // Path parameters bound outside the handler ({slug} by WorkspaceScopeFilter) and query names in camelCase.
        operation.Parameters ??= new List<IOpenApiParameter>();
        foreach (var parameter in operation.Parameters.OfType<OpenApiParameter>()
            .Where(p => p.In == ParameterLocation.Query && p.Name is { Length: > 0 }))
        {
            parameter.Name = char.ToLowerInvariant(parameter.Name![0]) + parameter.Name[1..];
        }
        foreach (Match match in RouteParameter().Matches(route))
        {
            var name = match.Groups[1].Value;
            if (operation.Parameters.Any(p => p.In == ParameterLocation.Path && p.Name == name)) continue;
            operation.Parameters.Add(new OpenApiParameter
            {
                Name = name,
                In = ParameterLocation.Path,
                Required = true,
                Description = name == "slug" ? "The workspace's slug." : null,
                Schema = new OpenApiSchema { Type = JsonSchemaType.String },
            });
        }

        var anonymous = metadata.OfType<IAllowAnonymous>().Any();
        var requiresAuth = !anonymous && metadata.OfType<IAuthorizeData>().Any();
        if (requiresAuth)
        {
            operation.Security = [new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(BearerScheme, context.Document)] = [] }];
        }
        else
        {
            // Explicitly none: anonymous routes (sign-in) take no token.
            operation.Security = [new OpenApiSecurityRequirement()];
        }

        var hasBody = description.ParameterDescriptions.Any(p => p.Source == Microsoft.AspNetCore.Mvc.ModelBinding.BindingSource.Body);
        var isWrite = method is not ("GET" or "HEAD");
        var hasPathParameters = route.Contains('{');
        var needsPermission = metadata.OfType<RequiresWorkspacePermission>().Any()
            || metadata.OfType<IAuthorizeData>().Any(a => a.Policy is not null || a.Roles is not null)
            || route.StartsWith("/api/users", StringComparison.Ordinal);

        operation.Responses ??= new OpenApiResponses();
        AddProblem(operation, context, 400, "The request is not valid (a field, a query parameter or a header); `errors` names each field.");
        if (requiresAuth) AddProblem(operation, context, 401, "No valid bearer token.");
        if (anonymous && route == "/api/auth/token") AddProblem(operation, context, 401, "Wrong username or password.");
        if (requiresAuth && needsPermission) AddProblem(operation, context, 403, "Your role does not allow this.");
        if (hasPathParameters) AddProblem(operation, context, 404, "The resource (or its workspace) does not exist or is not visible to you.");
        if (isWrite)
        {
            AddProblem(operation, context, 409, "The change conflicts with the current state (a name or slug taken, a request already in progress).");
        }
        if (metadata.OfType<Infrastructure.AcceptsPreconditions>().Any() || (!isWrite && hasPathParameters))
        {
            AddProblem(operation, context, 412, "If-Match does not match the resource's current ETag.");
        }
        if (hasBody)
        {
            AddProblem(operation, context, 413, "The request body is larger than 1 MiB.");
            AddProblem(operation, context, 415, "The request body is not application/json.");
        }
        if (route.EndsWith("/execute", StringComparison.Ordinal) || route.EndsWith("/publish", StringComparison.Ordinal))
        {
            AddProblem(operation, context, 422,
                "The procedure cannot run or be published as it is (for example, it is not valid in the environment).");
        }
        AddProblem(operation, context, 429, "Too many requests (or failed sign-ins); Retry-After says when to try again.");
        AddProblem(operation, context, 503, "A database is unreachable or busy; Retry-After says when to try again.");

        if (hasBody && operation.RequestBody?.Content is { } content
            && description.ParameterDescriptions.FirstOrDefault(p => p.Source == Microsoft.AspNetCore.Mvc.ModelBinding.BindingSource.Body)
                ?.Type is { } bodyType
            && BodyExamples.TryGetValue(bodyType, out var example))
        {
            foreach (var media in content.Values.OfType<OpenApiMediaType>()) media.Example = example();
        }
        return Task.CompletedTask;
    }

    private static void AddProblem(OpenApiOperation operation, OpenApiOperationTransformerContext context, int status, string description)
    {
        var key = status.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var problem = new OpenApiMediaType { Schema = new OpenApiSchemaReference(ProblemSchema, context.Document) };
        if (operation.Responses!.TryGetValue(key, out var existing) && existing is OpenApiResponse declared)
        {
            // Declared by the endpoint (e.g. a ValidationProblem 400): keep it, and say it is a problem document.
            declared.Content ??= new Dictionary<string, OpenApiMediaType>();
            declared.Content.Remove("application/json");
            declared.Content[ProblemContentType] = problem;
            if (string.IsNullOrEmpty(declared.Description) || declared.Description == "Bad Request") declared.Description = description;
            return;
        }
        operation.Responses[key] = new OpenApiResponse
        {
            Description = description,
            Content = new Dictionary<string, OpenApiMediaType> { [ProblemContentType] = problem },
        };
    }

    private static string? OperationIdFor(IList<object> metadata)
    {
        if (metadata.OfType<IEndpointNameMetadata>().FirstOrDefault()?.EndpointName is { } name) return name;
        if (metadata.OfType<MethodInfo>().FirstOrDefault() is not { } handler) return null;
        return char.ToLowerInvariant(handler.Name[0]) + handler.Name[1..];
    }

    /// <summary>RFC 9457 problem details as this API writes them.</summary>
    private static OpenApiSchema ProblemDetailsSchema() => new()
    {
        Type = JsonSchemaType.Object,
        Description = "RFC 9457 problem details. `code` is stable and machine-readable (docs/api.md lists every code).",
        Required = new HashSet<string> { "status", "title", "code" },
        Properties = new Dictionary<string, IOpenApiSchema>
        {
            ["type"] = new OpenApiSchema { Type = JsonSchemaType.String },
            ["title"] = new OpenApiSchema { Type = JsonSchemaType.String },
            ["status"] = new OpenApiSchema { Type = JsonSchemaType.Integer, Format = "int32" },
            ["detail"] = new OpenApiSchema { Type = JsonSchemaType.String },
            ["instance"] = new OpenApiSchema { Type = JsonSchemaType.String },
            ["code"] = new OpenApiSchema { Type = JsonSchemaType.String, Description = "A stable error code, such as workspace.slug_taken." },
            ["traceId"] = new OpenApiSchema { Type = JsonSchemaType.String },
            ["errors"] = new OpenApiSchema
            {
                Type = JsonSchemaType.Object,
                Description = "For 400s: the messages for each field, keyed by field name.",
                AdditionalProperties = new OpenApiSchema { Type = JsonSchemaType.Array, Items = new OpenApiSchema { Type = JsonSchemaType.String } },
            },
        },
        AdditionalProperties = new OpenApiSchema(),
    };

    [GeneratedRegex(@"\{([A-Za-z0-9_]+)(?::[^}]*)?\}")]
    private static partial Regex RouteParameter();
}
