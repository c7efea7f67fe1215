using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TcStudio.Data.Migrations
{
    /// <inheritdoc />
    public partial class LoginThrottle : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "login_failures",
                columns: table => new
                {
                    key = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: false),
                    failures = table.Column<int>(type: "integer", nullable: false),
                    last_failure_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    locked_until = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    expires_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_login_failures", x => x.key);
                    table.CheckConstraint("ck_login_failures_failures_non_negative", "failures >= 0");
                    table.CheckConstraint("ck_login_failures_key", "key LIKE 'username:%' OR key LIKE 'address:%'");
                });

            migrationBuilder.CreateIndex(
                name: "ix_login_failures_expires_at",
                table: "login_failures",
                column: "expires_at");

            migrationBuilder.Sql(CreateFunctions);
        }

        /// <summary>
        /// The two statements of the sign-in throttle. <c>login_attempt_begin</c> checks and records an attempt in one
        /// call: it creates and locks the username's and the address's rows (always in key order, so concurrent
        /// attempts queue instead of deadlocking), refuses the attempt when the address is over its limit or the
        /// username is locked and this address has failures of its own, and otherwise counts it as a failure (until
        /// <c>login_attempt_succeeded</c> says otherwise) and locks the username for a wait that doubles with each
        /// failure past the limit. It returns null (go ahead) or how long to wait. A clean address may try a locked
        /// username: a stranger's failures cannot lock the owner out.
        /// </summary>
        private const string CreateFunctions = """
            CREATE FUNCTION login_attempt_begin(
                p_username_key text, p_address_key text, p_username_limit integer, p_address_limit integer,
                p_quiet_period interval, p_backoff_base interval, p_backoff_max interval)
            RETURNS interval
            LANGUAGE plpgsql AS $$
            DECLARE
                k text;
                t timestamptz;
                u login_failures;
                a login_failures;
            BEGIN
                FOREACH k IN ARRAY ARRAY(SELECT x FROM unnest(ARRAY[p_username_key, p_address_key]) AS x ORDER BY x) LOOP
                    INSERT INTO login_failures AS f (key, failures, last_failure_at, locked_until, expires_at)
                    VALUES (k, 0, clock_timestamp(), NULL, clock_timestamp())
                    ON CONFLICT (key) DO UPDATE SET key = f.key; -- takes the row lock
                END LOOP;
                t := clock_timestamp();
                SELECT * INTO u FROM login_failures WHERE key = p_username_key;
                SELECT * INTO a FROM login_failures WHERE key = p_address_key;

                IF u.expires_at <= t THEN u.failures := 0; u.locked_until := NULL; END IF;
                IF a.expires_at <= t THEN a.failures := 0; a.locked_until := NULL; END IF;

                IF a.locked_until > t THEN
                    RETURN a.locked_until - t;
                END IF;
                IF u.locked_until > t AND a.failures > 0 THEN
                    RETURN u.locked_until - t;
                END IF;

                u.failures := u.failures + 1;
                a.failures := a.failures + 1;
                IF u.failures >= p_username_limit THEN
                    u.locked_until := t + least(
                        p_backoff_base * power(2, least(u.failures - p_username_limit, 30)), p_backoff_max);
                END IF;
                IF a.failures >= p_address_limit THEN
                    a.locked_until := t + p_quiet_period;
                END IF;
                UPDATE login_failures
                SET failures = u.failures, last_failure_at = t, locked_until = u.locked_until,
                    expires_at = greatest(t, coalesce(u.locked_until, t)) + p_quiet_period
                WHERE key = p_username_key;
                UPDATE login_failures
                SET failures = a.failures, last_failure_at = t, locked_until = a.locked_until,
                    expires_at = greatest(t, coalesce(a.locked_until, t)) + p_quiet_period
                WHERE key = p_address_key;
                RETURN NULL;
            END
            $$;

            CREATE FUNCTION login_attempt_succeeded(p_username_key text, p_address_key text, p_address_limit integer)
            RETURNS void
            LANGUAGE sql AS $$
                DELETE FROM login_failures WHERE key = p_username_key;
                UPDATE login_failures
                SET failures = greatest(failures - 1, 0),
                    locked_until = CASE WHEN failures - 1 < p_address_limit THEN NULL ELSE locked_until END
                WHERE key = p_address_key;
            $$;
            """;

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""
                DROP FUNCTION login_attempt_succeeded(text, text, integer);
                DROP FUNCTION login_attempt_begin(text, text, integer, integer, interval, interval, interval);
                """);
            migrationBuilder.DropTable(
                name: "login_failures");
        }
    }
}
