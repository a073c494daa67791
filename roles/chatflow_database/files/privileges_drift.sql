-- Which items of the role's privilege list (the task "Grant each role what it
-- needs ...", given as JSON in the parameter grants, with the keys of
-- postgresql_privs)
-- the catalog does not satisfy yet: an item "present" whose privileges some
-- object or role lacks, an item "absent" whose privileges some object or role
-- holds, an item naming an object or a role that does not exist.  The task
-- runs postgresql_privs for those items only: one read instead of twenty
-- module calls on a host where nothing drifted.  Read by
-- tests/integration/test_privileges_drift.py against the module's own result.
WITH item AS (
  SELECT i.ord::int - 1 AS idx,
         i.g ->> 'type' AS type,
         coalesce(i.g ->> 'schema', 'public') AS schema,
         i.g ->> 'objs' AS objs,
         upper(i.g ->> 'privs') AS privs,
         i.g ->> 'roles' AS roles,
         i.g ->> 'target_roles' AS target_roles,
         coalesce(i.g ->> 'state', 'present') AS state
    FROM jsonb_array_elements(%(grants)s::jsonb) WITH ORDINALITY AS i (g, ord)
),
-- How many objects each item names (ALL_IN_SCHEMA: whatever exists).
named AS (
  SELECT idx,
         CASE WHEN objs = 'ALL_IN_SCHEMA' THEN 0
              WHEN type = 'default_privs' THEN cardinality(string_to_array(target_roles, ','))
              ELSE cardinality(string_to_array(objs, ',')) END AS objects
    FROM item
),
-- Each object an item covers with its ACL (the built-in default where NULL).
obj AS (
  SELECT it.idx, coalesce(d.datacl, acldefault('d', d.datdba)) AS acl
    FROM item it JOIN pg_database d ON d.datname = ANY (string_to_array(it.objs, ','))
   WHERE it.type = 'database'
  UNION ALL
  SELECT it.idx, coalesce(n.nspacl, acldefault('n', n.nspowner))
    FROM item it JOIN pg_namespace n ON n.nspname = ANY (string_to_array(it.objs, ','))
   WHERE it.type = 'schema'
  UNION ALL
  SELECT it.idx, coalesce(c.relacl, acldefault('r', c.relowner))
    FROM item it
    JOIN pg_namespace n ON n.nspname = it.schema
    JOIN pg_class c ON c.relnamespace = n.oid
   WHERE it.type = 'table'
     AND CASE WHEN it.objs = 'ALL_IN_SCHEMA' THEN c.relkind IN ('r', 'v', 'm', 'p', 'f')
              ELSE c.relname = ANY (string_to_array(it.objs, ',')) END
  UNION ALL
  SELECT it.idx, coalesce(p.proacl, acldefault('f', p.proowner))
    FROM item it
    CROSS JOIN LATERAL unnest(string_to_array(it.objs, ',')) AS f (signature)
    JOIN pg_proc p ON p.oid = to_regprocedure(quote_ident(it.schema) || '.' || replace(f.signature, ':', ','))
   WHERE it.type = 'function'
  UNION ALL
  -- Default privileges of a target role in a schema: no row means none given.
  SELECT it.idx, da.defaclacl
    FROM item it
    CROSS JOIN LATERAL unnest(string_to_array(it.target_roles, ',')) AS t (rolname)
    JOIN pg_roles r ON r.rolname = t.rolname
    JOIN pg_namespace n ON n.nspname = it.schema
    LEFT JOIN pg_default_acl da
      ON da.defaclrole = r.oid AND da.defaclnamespace = n.oid
     AND da.defaclobjtype = CASE it.objs WHEN 'TABLES' THEN 'r' WHEN 'SEQUENCES' THEN 'S'
                                         WHEN 'FUNCTIONS' THEN 'f' WHEN 'TYPES' THEN 'T' END
   WHERE it.type = 'default_privs'
),
-- Each grantee (PUBLIC is 0; a role that does not exist has no oid).
grantee AS (
  SELECT it.idx,
         CASE WHEN upper(g.rolname) = 'PUBLIC' THEN 0::oid ELSE r.oid END AS oid
    FROM item it
    CROSS JOIN LATERAL unnest(string_to_array(it.roles, ',')) AS g (rolname)
    LEFT JOIN pg_roles r ON r.rolname = g.rolname
),
-- Each privilege, ALL spelled out for the item's kind of object.
priv AS (
  SELECT it.idx, CASE p.name WHEN 'TEMP' THEN 'TEMPORARY' ELSE p.name END AS name
    FROM item it
    CROSS JOIN LATERAL unnest(
      CASE WHEN it.privs <> 'ALL' THEN string_to_array(it.privs, ',')
           WHEN it.type = 'database' THEN '{CREATE,CONNECT,TEMPORARY}'::text[]
           WHEN it.type = 'schema' THEN '{USAGE,CREATE}'::text[]
           WHEN it.type = 'function' OR it.objs = 'FUNCTIONS' THEN '{EXECUTE}'::text[]
           WHEN it.objs = 'SEQUENCES' THEN '{USAGE,SELECT,UPDATE}'::text[]
           WHEN it.objs = 'TYPES' THEN '{USAGE}'::text[]
           ELSE '{SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER}'::text[] END) AS p (name)
),
held AS (
  SELECT o.idx,
         -- (aclexplode refuses an empty ACL; NULL gives no rows.)
         EXISTS (SELECT 1 FROM aclexplode(CASE WHEN cardinality(o.acl) > 0 THEN o.acl END) a
                  WHERE a.grantee = g.oid AND a.privilege_type = p.name) AS held
    FROM obj o
    JOIN grantee g ON g.idx = o.idx
    JOIN priv p ON p.idx = o.idx
)
SELECT coalesce(array_agg(it.idx ORDER BY it.idx), '{}') AS drifted
  FROM item it JOIN named nm ON nm.idx = it.idx
 WHERE (SELECT count(*) FROM obj o WHERE o.idx = it.idx) < nm.objects
    OR EXISTS (SELECT 1 FROM grantee g WHERE g.idx = it.idx AND g.oid IS NULL)
    OR EXISTS (SELECT 1 FROM held h WHERE h.idx = it.idx AND h.held = (it.state = 'absent'))
