using System.Text;

namespace TcStudio.Tests.Procedures;

/// <summary>One generated draft: the routine it names, how its payload travels and what the payload would do.</summary>
/// <param name="Index">Its place in the generated sequence (with the seed, enough to generate it again).</param>
/// <param name="Technique">How the payload is hidden from a lexer (or, for "control", a legitimate draft).</param>
/// <param name="Payload">What the payload would do if it ever ran (its marker objects are named <paramref name="Marker"/>).</param>
/// <param name="Control">A legitimate draft: it must validate, publish and execute.</param>
public sealed record AdversarialDraft(int Index, string Name, string Technique, string Payload, string Marker, string Sql, bool Control)
{
    public override string ToString() =>
        $"draft #{Index} [{Technique} / {Payload}] for '{Name}':\n----\n{Sql.Replace("\r", "\\r")}\n----";
}

/// <summary>
/// Hostile PostgreSQL drafts from a seed: statements smuggled past a lexer (Unicode identifiers next to '$',
/// nested and unclosed dollar quotes, E'' strings and their continuations, comments of both kinds, psql's
/// parenthesis and BEGIN ATOMIC rules), carrying payloads that would leave a marker behind if they ran: COMMIT and
/// ROLLBACK, SET ROLE, SET/RESET SESSION AUTHORIZATION, DO blocks, CREATE EXTENSION, ALTER SYSTEM, COPY, dblink,
/// lo_import, pg_read_file, ALTER ROLE, CREATE SCHEMA, and writes to the service's own tables. Also payloads placed
/// inside a routine's body (harmless unless SECURITY DEFINER let them run as the owner), and legitimate controls.
/// </summary>
public static class AdversarialDrafts
{
    /// <summary>Routine names drafts use: shared across kinds, so replacing one kind by another (retry path) happens.</summary>
    public static readonly string[] Names = ["adv_a", "adv_b", "adv_c", "adv_d"];

    /// <summary>Characters from U+0080 up (identifier characters for PostgreSQL) and a few that .NET calls letters.</summary>
    private static readonly string[] Unicode = ["§", "é", "ß", "¿", "\u00A0", "µ", "ª", "·", "×", "中", "😀", "\u2028", "Ω", "ǅ"];

    public static readonly string[] Techniques =
    [
        "plain-after", "plain-before", "unicode-dollar", "nested-dollar", "unclosed-dollar", "e-string", "line-comment",
        "block-comment", "psql-rules", "body", "body-security-definer", "option",
    ];

    public static readonly string[] Payloads =
    [
        "commit", "rollback", "set-role", "reset-session-authorization", "set-session-authorization", "do", "create-extension",
        "alter-system", "copy", "dblink", "lo-import", "pg-read-file", "alter-role", "create-schema", "tamper",
    ];

    public static List<AdversarialDraft> Generate(int seed, int count, string markerPrefix)
    {
        var random = new Random(seed);
        var drafts = new List<AdversarialDraft>(count);
        for (var i = 0; i < count; i++)
        {
            var name = Names[random.Next(Names.Length)];
            var marker = $"{markerPrefix}{i}";
            // About one draft in eight is a legitimate control (that must publish and execute).
            if (random.Next(8) == 0)
            {
                var (kind, sql) = Control(random, name);
                drafts.Add(new AdversarialDraft(i, name, "control", kind, marker, sql, Control: true));
                continue;
            }
            var technique = Techniques[random.Next(Techniques.Length)];
            var payload = Payloads[random.Next(Payloads.Length)];
            var text = Payload(random, payload, marker, inBody: technique.StartsWith("body", StringComparison.Ordinal));
            drafts.Add(new AdversarialDraft(i, name, technique, payload, marker, Conceal(random, technique, name, text), Control: false));
        }
        return drafts;
    }

    /// <summary>
    /// SQL that would leave <paramref name="marker"/> behind (a table, schema, setting, file or row) if it ran. In a
    /// body (<paramref name="inBody"/>) it runs as the execute role when the routine is executed; PostgreSQL lets
    /// every role change its own settings, so there ALTER ROLE CURRENT_USER is left out (it would touch only that
    /// role: README, Isolation).
    /// </summary>
    private static string Payload(Random random, string kind, string marker, bool inBody) => kind switch
    {
        "commit" => $"COMMIT; CREATE TABLE {marker}(x int)",
        "rollback" => Pick(random, $"ROLLBACK; CREATE TABLE {marker}(x int)", $"ROLLBACK; BEGIN; CREATE SCHEMA {marker}; COMMIT"),
        "set-role" => Pick(random, $"SET ROLE postgres; CREATE TABLE {marker}(x int)", $"SET ROLE NONE; CREATE SCHEMA {marker}",
            $"SET LOCAL ROLE pg_write_server_files; COPY (SELECT 1) TO '/tmp/{marker}.txt'"),
        "reset-session-authorization" => $"RESET SESSION AUTHORIZATION; CREATE TABLE {marker}(x int)",
        "set-session-authorization" => $"SET SESSION AUTHORIZATION postgres; CREATE TABLE {marker}(x int)",
        "do" => Pick(random, $"DO $do$ BEGIN EXECUTE 'CREATE TABLE {marker}(x int)'; END $do$",
            $"DO LANGUAGE plpgsql 'BEGIN CREATE SCHEMA {marker}; END'"),
        "create-extension" => Pick(random, "CREATE EXTENSION IF NOT EXISTS pgcrypto", "CREATE EXTENSION IF NOT EXISTS dblink",
            $"CREATE EXTENSION IF NOT EXISTS citext SCHEMA public; CREATE TABLE {marker}(x int)"),
        "alter-system" => Pick(random, "ALTER SYSTEM SET work_mem = '77MB'", $"ALTER SYSTEM SET application_name = '{marker}'"),
        "copy" => Pick(random, $"COPY (SELECT 1) TO '/tmp/{marker}.txt'", $"CREATE TABLE {marker}(x text); COPY {marker} FROM '/etc/hostname'"),
        "dblink" => Pick(random, $"SELECT dblink_exec('dbname=postgres', 'CREATE TABLE {marker}(x int)')",
            $"CREATE EXTENSION dblink; SELECT dblink_exec('dbname=postgres', 'CREATE TABLE {marker}(x int)')"),
        "lo-import" => Pick(random, "SELECT lo_import('/etc/hostname')", $"CREATE TABLE {marker} AS SELECT lo_import('/etc/hostname') AS oid"),
        "pg-read-file" => $"CREATE TABLE {marker} AS SELECT pg_read_file('PG_VERSION') AS v",
        "alter-role" => inBody ? AlterDatabase(marker)
            : Pick(random, "ALTER ROLE CURRENT_USER SET work_mem = '77MB'", AlterDatabase(marker),
                "ALTER ROLE CURRENT_USER PASSWORD 'pwned-password'"),
        "create-schema" => $"CREATE SCHEMA {marker}",
        "tamper" => Pick(random, "DELETE FROM tcstudio.tcstudio_schema_migrations",
            $"INSERT INTO tcstudio.procedure_deployments (procedure, checksum, deployed_by) VALUES ('{marker}', '0', 'x')"),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    private static string AlterDatabase(string marker) =>
        $"DO $ad$ BEGIN EXECUTE format('ALTER DATABASE %I SET application_name = %L', current_database(), '{marker}'); END $ad$";

    /// <summary>A draft carrying <paramref name="payload"/> past a lexer by <paramref name="technique"/>.</summary>
    private static string Conceal(Random random, string technique, string name, string payload)
    {
        var routine = Routine(random, name);
        var u = Pick(random, Unicode);
        var tag = Pick(random, "x", "body", "_", "a1", "é", "q" + u);
        return technique switch
        {
            "plain-after" => $"{routine};\n{payload};",
            "plain-before" => $"{payload};\n{routine};",
            "unicode-dollar" => Pick(random,
                $"CREATE FUNCTION {name}({u}${tag}$ int) RETURNS int LANGUAGE sql AS 'select 1'; {payload}; --${tag}$",
                $"CREATE FUNCTION {name}(a{u}$$ int) RETURNS int LANGUAGE sql AS 'select 1'; {payload}; --$$",
                $"CREATE OR REPLACE FUNCTION {name}() RETURNS int LANGUAGE sql AS 'select 1' /* {u}${tag}$ */; {payload}; --${tag}$",
                $"CREATE FUNCTION {name}(\"{u}${tag}$\" int DEFAULT 1) RETURNS int LANGUAGE sql AS 'select 1'; {payload}; --${tag}$",
                $"CREATE FUNCTION {name}(x{u} int DEFAULT 1) RETURNS int LANGUAGE sql AS ${tag}$select 1${tag}$ ; {payload}"),
            "nested-dollar" => Pick(random,
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE plpgsql AS $a$ BEGIN RETURN 1; END $b$; {payload}; $b$ $a$",
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql AS $a$ select 1 $a$; {payload}; $b$ $a$ $b$",
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE plpgsql AS $a$ BEGIN RETURN length($b$;$b$); END $a$ $c$; {payload}; $c$",
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql AS $a$ select 1 $A$; {payload}; $a$"),
            "unclosed-dollar" => Pick(random,
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql AS ${tag}$ select 1; {payload};",
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql AS $$ select 1; {payload}; $",
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql AS 'select 1'; {payload}; $x$"),
            "e-string" => Pick(random,
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql AS E'select 1\\'; {payload}; --'",
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql AS 'select 1\\'; {payload}; --'",
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql AS E'select 1'\n'\\'; {payload}; --'",
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql AS e'select 1\\\\'; {payload}; --'",
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql AS 'select 1'\n'\\'; {payload}; --'"),
            "line-comment" => Pick(random,
                $"-- note\r{payload};\n{routine}",
                $"{routine} --\r; {payload}",
                $"{routine}; -- {payload}",
                $"--\r{payload} --\n;{routine}"),
            "block-comment" => Pick(random,
                $"/* /* */ {payload}; */ {routine}",
                $"/* */ {payload}; /* */ {routine}",
                $"{routine} /* {payload};",
                $"/*/ {payload}; */ {routine}",
                $"{routine} /* /* */ */ ; {payload}"),
            "psql-rules" => Pick(random,
                $"CREATE FUNCTION {name}(a int DEFAULT (1); {payload}; SELECT (1)) RETURNS int LANGUAGE sql AS 'select 1'",
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; {payload}; END",
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql AS 'select 1' BEGIN; {payload}; END",
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; {payload}"),
            "body" => BodyRoutine(random, name, payload, definer: false),
            "body-security-definer" => BodyRoutine(random, name, payload, definer: true),
            "option" => Pick(random,
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql SET role = 'postgres' AS 'select 1'",
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql SET session_authorization = 'postgres' AS 'select 1'",
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE plpgsql sEcUrItY /* hidden */ DeFiNeR AS $$ BEGIN {payload}; RETURN 1; END $$",
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE plpgsql EXTERNAL SECURITY DEFINER AS $$ BEGIN {payload}; RETURN 1; END $$",
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE c AS 'pg_read_file'",
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE internal AS 'pg_read_file'"),
            _ => throw new ArgumentOutOfRangeException(nameof(technique)),
        };
    }

    /// <summary>The payload inside a PL/pgSQL body: it runs only when executed (as the execute role, unless SECURITY DEFINER).</summary>
    private static string BodyRoutine(Random random, string name, string payload, bool definer)
    {
        var security = definer ? " SECURITY DEFINER" : "";
        // A DO block's own dollar quotes cannot share the body's tag.
        return random.Next(2) == 0
            ? $"CREATE OR REPLACE FUNCTION {name}() RETURNS int LANGUAGE plpgsql{security} AS $body$\n"
                + $"BEGIN\n    {payload};\n    RETURN 1;\nEND\n$body$;"
            : $"CREATE OR REPLACE PROCEDURE {name}() LANGUAGE plpgsql{security} AS $body$\nBEGIN\n    {payload};\nEND\n$body$;";
    }

    /// <summary>A valid routine of <paramref name="name"/> (a function or a procedure, various return types).</summary>
    private static string Routine(Random random, string name) => random.Next(4) switch
    {
        0 => $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql AS 'select 1'",
        1 => $"CREATE OR REPLACE FUNCTION {name}(n int DEFAULT 2) RETURNS text LANGUAGE sql AS $$ SELECT repeat('x', n) $$",
        2 => $"CREATE PROCEDURE {name}() LANGUAGE plpgsql AS $$ BEGIN PERFORM 1; END $$",
        _ => $"CREATE FUNCTION {name}() RETURNS SETOF int LANGUAGE sql AS $$ SELECT generate_series(1, 3) $$",
    };

    /// <summary>Legitimate drafts that use the same tricky lexical features: each must publish and execute.</summary>
    private static (string Kind, string Sql) Control(Random random, string name)
    {
        var u = Pick(random, Unicode);
        return random.Next(9) switch
        {
            0 => ("unicode-parameter",
                $"CREATE FUNCTION {name}(é$x$ int DEFAULT 1, \"{u}$y$\" text DEFAULT 'z') RETURNS int LANGUAGE sql AS $$ SELECT 7 $$;"),
            1 => ("e-string-body", $"CREATE OR REPLACE FUNCTION {name}() RETURNS text LANGUAGE sql AS E'select \\'a;b\\'::text';"),
            2 => ("nested-dollar-body",
                $"CREATE FUNCTION {name}() RETURNS int LANGUAGE plpgsql AS $outer$ BEGIN RETURN length($inner$ ; $outer $inner$); END $outer$;"),
            3 => ("line-comments",
                $"-- leading comment ; with a semicolon\r\nCREATE FUNCTION {name}() RETURNS int -- trailing; comment\r"
                + "LANGUAGE sql AS 'select 3';"),
            4 => ("block-comments", $"/* a /* nested ; */ comment */ CREATE PROCEDURE {name}() LANGUAGE sql AS $$ SELECT 1 $$ /* ; */;"),
            5 => ("begin-atomic",
                $"CREATE FUNCTION {name}(n int DEFAULT 4) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN n > 2 THEN n ELSE 0 END; END;"),
            6 => ("commented-payload", $"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql AS 'select 5'; -- COMMIT; CREATE TABLE pwned(x int);"),
            7 => ("continued-string", $"CREATE FUNCTION {name}() RETURNS text LANGUAGE sql AS 'select ''a'''\n'::text';"),
            _ => ("security-invoker",
                $"CREATE FUNCTION {name}() RETURNS SETOF int LANGUAGE sql SECURITY INVOKER SET search_path = public AS $$ SELECT 1 $$;"),
        };
    }

    private static string Pick(Random random, params string[] options) => options[random.Next(options.Length)];

    /// <summary>For the summary: how often each value occurs.</summary>
    public static string Histogram(IEnumerable<string> values) =>
        string.Join(", ", values.GroupBy(v => v).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => $"{g.Key} {g.Count()}"));

    public static string Describe(IEnumerable<AdversarialDraft> drafts)
    {
        var text = new StringBuilder();
        foreach (var draft in drafts) text.AppendLine(draft.ToString());
        return text.ToString();
    }
}
