-- Benchmark job (b): `incident scan DIR` written by hand in DuckDB SQL, as a competent analyst
-- would write it for the data that `incident sample` generates (int64 IDs and
-- timestamp[us, UTC] times in every input, so nothing needs normalising).
--
-- Rules and outputs follow DESIGN.md and docs/decisions.md: valid rows have all five required
-- columns non-null, the window is [since, until), a misdelivery is a valid in-window delivery
-- that no grant of the same (user, app) covers, exposures and counts per rules 4 and 5.
--
-- The dollar-brace placeholders (input paths, output files, the window) are filled in by
-- bench/duckdb_job.py as SQL literals. DuckDB runs with its default settings (all threads).

SET TimeZone = 'UTC';

CREATE TEMP VIEW deliveries AS
SELECT * FROM read_parquet(${deliveries}, hive_partitioning = false);

-- Rejected authorization rows (docs/decisions.md) are left out of the grants.
CREATE TEMP TABLE grants AS
SELECT for_user_id, app_id, granted_at, revoked_at
FROM read_parquet(${authorizations})
WHERE for_user_id IS NOT NULL AND app_id IS NOT NULL AND granted_at IS NOT NULL
  AND (revoked_at IS NULL OR revoked_at >= granted_at);

-- A registry row without a developer adds nothing when another row of the app names one.
CREATE TEMP TABLE registry AS
SELECT app_id, max(developer_id) AS developer_id
FROM read_parquet(${apps})
WHERE app_id IS NOT NULL
GROUP BY app_id;

-- Rules 1, 2 and 6: rows read, rejected, outside the window, inside it.
CREATE TEMP TABLE row_counts AS
SELECT
    count(*) AS rows_read,
    count(*) FILTER (WHERE rejected) AS rows_rejected,
    count(*) FILTER (WHERE NOT rejected AND NOT in_window) AS rows_outside_window,
    count(*) FILTER (WHERE NOT rejected AND in_window) AS rows_in_window
FROM (
    SELECT
        event_id IS NULL OR delivered_at IS NULL OR app_id IS NULL OR for_user_id IS NULL
            OR event_type IS NULL AS rejected,
        delivered_at >= ${since} AND delivered_at < ${until} AS in_window
    FROM deliveries
);

-- Rule 3: misdeliveries, with their reason and the developer who received them.
CREATE TEMP TABLE misdeliveries AS
WITH candidates AS (
    SELECT *
    FROM deliveries
    WHERE event_id IS NOT NULL AND delivered_at IS NOT NULL AND app_id IS NOT NULL
      AND for_user_id IS NOT NULL AND event_type IS NOT NULL
      AND delivered_at >= ${since} AND delivered_at < ${until}
),
unauthorized AS (
    SELECT d.*
    FROM candidates d
    ANTI JOIN grants g
        ON d.for_user_id = g.for_user_id AND d.app_id = g.app_id
       AND g.granted_at <= d.delivered_at
       AND (g.revoked_at IS NULL OR d.delivered_at < g.revoked_at)
),
-- "A grant of that pair had ended at or before delivered_at" <=> its earliest revocation did.
pair_grants AS (
    SELECT for_user_id, app_id, min(revoked_at) AS first_revoked_at
    FROM grants
    GROUP BY for_user_id, app_id
)
SELECT
    u.*,
    coalesce(r.developer_id, 'unknown:' || CAST(u.app_id AS VARCHAR)) AS developer_id,
    CASE
        WHEN p.for_user_id IS NULL THEN 'no_grant'
        WHEN p.first_revoked_at <= u.delivered_at THEN 'after_revocation'
        ELSE 'before_grant'
    END AS reason
FROM unauthorized u
LEFT JOIN pair_grants p ON p.for_user_id = u.for_user_id AND p.app_id = u.app_id
LEFT JOIN registry r ON r.app_id = u.app_id;

-- Rule 4: who was exposed by each misdelivery, and in which role.
CREATE TEMP TABLE exposures AS
SELECT for_user_id AS user_id, 'subscriber' AS role, event_id, event_type, developer_id,
       delivered_at
FROM misdeliveries
UNION ALL
SELECT sender_id, 'sender', event_id, event_type, developer_id, delivered_at
FROM misdeliveries WHERE event_type = 'direct_message' AND sender_id IS NOT NULL
UNION ALL
SELECT recipient_id, 'recipient', event_id, event_type, developer_id, delivered_at
FROM misdeliveries WHERE event_type = 'direct_message' AND recipient_id IS NOT NULL
UNION ALL
SELECT sender_id, 'author', event_id, event_type, developer_id, delivered_at
FROM misdeliveries WHERE event_type = 'protected_tweet' AND sender_id IS NOT NULL;

-- Outputs.
COPY (
    SELECT * FROM misdeliveries ORDER BY delivered_at, event_id, app_id, for_user_id
) TO ${out_misdeliveries} (FORMAT parquet);

COPY (
    SELECT
        user_id,
        list_sort(list(DISTINCT role)) AS roles,
        count(DISTINCT event_id) AS events,
        count(DISTINCT event_id) FILTER (WHERE event_type = 'direct_message') AS direct_messages,
        count(DISTINCT event_id) FILTER (WHERE event_type = 'protected_tweet')
            AS protected_tweets,
        count(DISTINCT developer_id) AS developers,
        list_sort(list(DISTINCT developer_id)) AS developer_ids,
        min(delivered_at) AS first_exposed_at,
        max(delivered_at) AS last_exposed_at
    FROM exposures
    GROUP BY user_id
    ORDER BY user_id
) TO ${out_users} (FORMAT parquet);

COPY (
    WITH received AS (
        SELECT
            developer_id,
            list_sort(list(DISTINCT app_id)) AS app_ids,
            count(DISTINCT event_id) AS events,
            count(*) AS deliveries,
            count(DISTINCT event_id) FILTER (WHERE event_type = 'direct_message')
                AS direct_messages,
            count(DISTINCT event_id) FILTER (WHERE event_type = 'protected_tweet')
                AS protected_tweets,
            min(delivered_at) AS first_received_at,
            max(delivered_at) AS last_received_at
        FROM misdeliveries
        GROUP BY developer_id
    ),
    reach AS (
        SELECT developer_id, count(DISTINCT user_id) AS users_exposed
        FROM exposures
        GROUP BY developer_id
    )
    SELECT
        developer_id, app_ids, events, deliveries, direct_messages, protected_tweets,
        coalesce(users_exposed, 0) AS users_exposed, first_received_at, last_received_at
    FROM received LEFT JOIN reach USING (developer_id)
    ORDER BY developer_id
) TO ${out_developers} (FORMAT parquet);

-- Rule 6: the row accounting; rows_read = rejected + outside_window + authorized + misdelivered.
COPY (
    SELECT
        rows_read,
        rows_rejected,
        rows_outside_window,
        rows_in_window - (SELECT count(*) FROM misdeliveries) AS rows_authorized,
        (SELECT count(*) FROM misdeliveries) AS rows_misdelivered
    FROM row_counts
) TO ${out_accounting} (FORMAT json);
