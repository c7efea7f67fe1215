using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TcStudio.SystemDatabase.Migrations
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
                    last_failure_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    locked_until = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    pending = table.Column<int>(type: "integer", nullable: false),
                    pending_expires_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    expires_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_login_failures", x => x.key);
                    table.CheckConstraint("ck_login_failures_failures_non_negative", "failures >= 0");
                    table.CheckConstraint("ck_login_failures_key", "key LIKE 'username:%' OR key LIKE 'address:%'");
                    table.CheckConstraint("ck_login_failures_pending_non_negative", "pending >= 0");
                });

            migrationBuilder.CreateIndex(
                name: "ix_login_failures_expires_at",
                table: "login_failures",
                column: "expires_at");

            migrationBuilder.Sql(CreateFunctions);
        }

        /// <summary>
        /// The sign-in throttle's two statements; each checks and records in one call, holding the username's and the
        /// address's rows locked (taken in key order, so never a deadlock).
        /// <para><c>login_attempt_begin</c> decides whether an attempt may have its password checked: refused (the wait
        /// is returned) when the address is locked, or when the username is locked and the address has failures or
        /// attempts of its own; "busy" (an interval of 0: ask again shortly) when the attempts already in flight could
        /// reach a limit, or another attempt holds the rows; otherwise counted as pending (NULL is returned). It never
        /// waits for a lock (NOWAIT, 100 ms for a concurrent insert), so a burst never holds pooled connections.</para>
        /// <para><c>login_attempt_end</c> reports the outcome: a failure is counted, and past the username's limit locks it
        /// for a wait that doubles with each further failure; a success clears the username's failures.</para>
        /// A clean address (no failures, nothing pending) may try a locked username: a stranger cannot lock the owner out.
        /// </summary>
        private const string CreateFunctions = """
            CREATE FUNCTION login_attempt_begin(
                p_username_key text, p_address_key text, p_username_limit integer, p_address_limit integer,
                p_quiet_period interval, p_pending_timeout interval)
            RETURNS interval
            LANGUAGE plpgsql AS $$
            DECLARE
                t timestamptz;
                u login_failures;
                a login_failures;
            BEGIN
                BEGIN
                    PERFORM set_config('lock_timeout', '100ms', true);
                    INSERT INTO login_failures (key, failures, pending, expires_at)
                    SELECT k, 0, 0, clock_timestamp() FROM unnest(ARRAY[p_username_key, p_address_key]) AS k ORDER BY k
                    ON CONFLICT (key) DO NOTHING;
                    PERFORM 1 FROM login_failures WHERE key IN (p_username_key, p_address_key) ORDER BY key FOR UPDATE NOWAIT;
                EXCEPTION WHEN lock_not_available THEN
                    RETURN interval '0';
                END;
                t := clock_timestamp();
                SELECT * INTO u FROM login_failures WHERE key = p_username_key;
                SELECT * INTO a FROM login_failures WHERE key = p_address_key;

                -- Forgotten rows start again; attempts that never reported back stop counting.
                IF u.expires_at <= t THEN u.failures := 0; u.locked_until := NULL; u.pending := 0; END IF;
                IF a.expires_at <= t THEN a.failures := 0; a.locked_until := NULL; a.pending := 0; END IF;
                IF u.pending_expires_at <= t THEN u.pending := 0; END IF;
                IF a.pending_expires_at <= t THEN a.pending := 0; END IF;

                IF a.locked_until > t THEN
                    RETURN a.locked_until - t;
                END IF;
                IF a.failures > 0 OR a.pending > 0 THEN
                    IF u.locked_until > t THEN
                        RETURN u.locked_until - t;
                    END IF;
                    -- In flight at once: no more than the failures the limit still allows (one after a lock ended).
                    IF u.pending >= greatest(1, p_username_limit - u.failures)
                       OR a.pending >= greatest(1, p_address_limit - a.failures) THEN
                        RETURN interval '0';
                    END IF;
                END IF;

                UPDATE login_failures
                SET failures = u.failures, locked_until = u.locked_until, pending = u.pending + 1,
                    pending_expires_at = t + p_pending_timeout,
                    expires_at = greatest(coalesce(u.locked_until, t), t + p_pending_timeout) + p_quiet_period
                WHERE key = p_username_key;
                UPDATE login_failures
                SET failures = a.failures, locked_until = a.locked_until, pending = a.pending + 1,
                    pending_expires_at = t + p_pending_timeout,
                    expires_at = greatest(coalesce(a.locked_until, t), t + p_pending_timeout) + p_quiet_period
                WHERE key = p_address_key;
                RETURN NULL;
            END
            $$;

            CREATE FUNCTION login_attempt_end(
                p_username_key text, p_address_key text, p_succeeded boolean, p_username_limit integer,
                p_address_limit integer, p_quiet_period interval, p_backoff_base interval, p_backoff_max interval)
            RETURNS void
            LANGUAGE plpgsql AS $$
            DECLARE
                t timestamptz;
                u login_failures;
                a login_failures;
            BEGIN
                PERFORM 1 FROM login_failures WHERE key IN (p_username_key, p_address_key) ORDER BY key FOR UPDATE;
                t := clock_timestamp();
                SELECT * INTO u FROM login_failures WHERE key = p_username_key;
                IF FOUND THEN
                    IF u.expires_at <= t THEN u.failures := 0; u.locked_until := NULL; END IF;
                    IF p_succeeded THEN
                        u.failures := 0;
                        u.locked_until := NULL;
                    ELSE
                        u.failures := u.failures + 1;
                        u.last_failure_at := t;
                        IF u.failures >= p_username_limit THEN
                            u.locked_until := t + least(
                                p_backoff_base * power(2, least(u.failures - p_username_limit, 30)), p_backoff_max);
                        END IF;
                    END IF;
                    UPDATE login_failures
                    SET failures = u.failures, last_failure_at = u.last_failure_at, locked_until = u.locked_until,
                        pending = greatest(u.pending - 1, 0),
                        expires_at = greatest(coalesce(u.locked_until, t), coalesce(u.pending_expires_at, t), t) + p_quiet_period
                    WHERE key = p_username_key;
                END IF;
                SELECT * INTO a FROM login_failures WHERE key = p_address_key;
                IF FOUND THEN
                    IF a.expires_at <= t THEN a.failures := 0; a.locked_until := NULL; END IF;
                    IF NOT p_succeeded THEN
                        a.failures := a.failures + 1;
                        a.last_failure_at := t;
                        IF a.failures >= p_address_limit THEN
                            a.locked_until := t + p_quiet_period;
                        END IF;
                    END IF;
                    UPDATE login_failures
                    SET failures = a.failures, last_failure_at = a.last_failure_at, locked_until = a.locked_until,
                        pending = greatest(a.pending - 1, 0),
                        expires_at = greatest(coalesce(a.locked_until, t), coalesce(a.pending_expires_at, t), t) + p_quiet_period
                    WHERE key = p_address_key;
                END IF;
            END
            $$;
            """;

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""
                DROP FUNCTION login_attempt_end(text, text, boolean, integer, integer, interval, interval, interval);
                DROP FUNCTION login_attempt_begin(text, text, integer, integer, interval, interval);
                """);
            migrationBuilder.DropTable(
                name: "login_failures");
        }
    }
}
