/*
 * postgres_schema.h — the PostgreSQL backend's schema, as an ordered list of
 * migrations (included by src/store/postgres.c only). The same tables and
 * meanings as the SQLite schema (sqlite_schema.h, docs/store.md), in one
 * first migration; the rules for changing it are SQLite's: never edit a
 * shipped migration, append one; a database records every version applied
 * in conveyor_schema and a conveyor refuses a database whose highest version
 * it does not know. Every migration runs in the one transaction that applies
 * all pending ones, under an advisory lock (several nodes may start at once).
 *
 * JSON values are text (not jsonb: jsonb would reorder keys and rewrite
 * numbers, and values must read back exactly); times are bigint
 * milliseconds since the epoch.
 */
#ifndef CV_STORE_POSTGRES_SCHEMA_H
#define CV_STORE_POSTGRES_SCHEMA_H

/* The advisory lock key of migrations ('CVYR'), and of the bus's inserts
 * (events are numbered in commit order: see postgres.c). */
#define CV_PG_LOCK_MIGRATE 0x43565952
#define CV_PG_LOCK_BUS 0x43565953

struct cv_pg_migration {
    int version;
    const char *sql;
};

static const struct cv_pg_migration cv_pg_migrations[] = {
    {1,
     "CREATE TABLE workflows ("
     "  namespace   text NOT NULL,"
     "  name        text NOT NULL,"
     "  version     text NOT NULL,"
     "  text        text NOT NULL,"
     "  deployed_at bigint NOT NULL,"
     "  PRIMARY KEY (namespace, name, version)"
     ");"
     "CREATE TABLE instances ("
     "  created_seq     bigserial PRIMARY KEY,"
     "  id              text NOT NULL UNIQUE,"
     "  namespace       text NOT NULL,"
     "  name            text NOT NULL,"
     "  version         text NOT NULL,"
     "  status          text NOT NULL,"
     "  input           text NOT NULL,"
     "  output          text,"
     "  error           text,"
     "  state           text,"
     "  epoch           bigint NOT NULL DEFAULT 0,"
     "  history_seq     bigint NOT NULL DEFAULT 0,"
     "  idempotency_key text UNIQUE,"
     "  created_at      bigint NOT NULL,"
     "  updated_at      bigint NOT NULL,"
     "  owner           text,"
     "  lease_until     bigint NOT NULL DEFAULT 0,"
     "  FOREIGN KEY (namespace, name, version) REFERENCES workflows (namespace, name, version)"
     ");"
     "CREATE INDEX instances_by_status ON instances (status, created_seq);"
     "CREATE INDEX instances_by_workflow ON instances (namespace, name, created_seq);"
     "CREATE INDEX instances_by_owner ON instances (owner) WHERE owner IS NOT NULL;"
     "CREATE TABLE history ("
     "  instance text NOT NULL REFERENCES instances (id),"
     "  seq      bigint NOT NULL,"
     "  time     bigint NOT NULL,"
     "  type     text NOT NULL,"
     "  task     text,"
     "  data     text,"
     "  PRIMARY KEY (instance, seq)"
     ");"
     "CREATE TABLE timers ("
     "  instance text NOT NULL REFERENCES instances (id),"
     "  key      text NOT NULL,"
     "  fire_at  bigint NOT NULL,"
     "  PRIMARY KEY (instance, key)"
     ");"
     "CREATE INDEX timers_by_fire_at ON timers (fire_at);"
     "CREATE TABLE events ("
     "  seq         bigserial PRIMARY KEY,"
     "  type        text NOT NULL,"
     "  received_at bigint NOT NULL,"
     "  expires_at  bigint NOT NULL,"
     "  event       text NOT NULL,"
     "  origin      text NOT NULL DEFAULT 'api'"
     ");"
     "CREATE INDEX events_by_expiry ON events (expires_at);"
     "CREATE TABLE cursors ("
     "  name text PRIMARY KEY,"
     "  seq  bigint NOT NULL"
     ");"
     "CREATE TABLE models ("
     "  name       text NOT NULL,"
     "  version    bigint NOT NULL,"
     "  kind       text NOT NULL,"
     "  status     text NOT NULL DEFAULT 'draft'"
     "             CHECK (status IN ('draft', 'approved', 'production', 'retired')),"
     "  card       text NOT NULL,"
     "  bytes      bytea NOT NULL,"
     "  created_at bigint NOT NULL,"
     "  updated_at bigint NOT NULL,"
     "  UNIQUE (name, version)"
     ");"
     "CREATE UNIQUE INDEX models_production ON models (name) WHERE status = 'production';"
     "CREATE TABLE tasks ("
     "  seq              bigserial PRIMARY KEY,"
     "  id               text NOT NULL UNIQUE,"
     "  instance         text,"
     "  task_ref         text,"
     "  namespace        text,"
     "  name             text,"
     "  version          text,"
     "  title            text NOT NULL,"
     "  status           text NOT NULL"
     "                   CHECK (status IN ('open', 'claimed', 'completed', 'cancelled', 'escalated')),"
     "  role             text,"
     "  assignee         text,"
     "  priority         bigint NOT NULL DEFAULT 0,"
     "  due_at           bigint,"
     "  claimed_by       text,"
     "  claim_expires_at bigint,"
     "  opened_at        bigint NOT NULL,"
     "  completed_at     bigint,"
     "  doc              text NOT NULL"
     ");"
     "CREATE INDEX tasks_queue ON tasks (status, priority DESC, due_at, seq);"
     "CREATE INDEX tasks_by_instance ON tasks (instance, status);"
     "CREATE TABLE feedback ("
     "  seq        bigserial PRIMARY KEY,"
     "  task       text NOT NULL,"
     "  instance   text,"
     "  field      text NOT NULL,"
     "  model      text NOT NULL,"
     "  overridden integer NOT NULL,"
     "  reviewer   text NOT NULL,"
     "  at         bigint,"
     "  example    text NOT NULL,"
     "  UNIQUE (task, field)"
     ");"
     "CREATE INDEX feedback_by_model ON feedback (model, seq);"
     "CREATE TABLE model_routing ("
     "  name           text PRIMARY KEY,"
     "  canary_version bigint,"
     "  canary_share   double precision NOT NULL DEFAULT 0 CHECK (canary_share >= 0 AND canary_share <= 1),"
     "  shadow_version bigint,"
     "  updated_at     bigint NOT NULL"
     ");"
     "CREATE TABLE model_registry ("
     "  id         integer PRIMARY KEY CHECK (id = 1),"
     "  generation bigint NOT NULL"
     ");"
     "INSERT INTO model_registry (id, generation) VALUES (1, 0);"
     "CREATE FUNCTION conveyor_registry_bump() RETURNS trigger LANGUAGE plpgsql AS"
     "  $$ BEGIN UPDATE model_registry SET generation = generation + 1; RETURN NULL; END $$;"
     "CREATE TRIGGER models_changed AFTER INSERT OR UPDATE ON models"
     "  FOR EACH STATEMENT EXECUTE FUNCTION conveyor_registry_bump();"
     "CREATE TRIGGER model_routing_changed AFTER INSERT OR UPDATE OR DELETE ON model_routing"
     "  FOR EACH STATEMENT EXECUTE FUNCTION conveyor_registry_bump();"
     "CREATE TABLE leases ("
     "  name  text PRIMARY KEY,"
     "  owner text NOT NULL,"
     "  until bigint NOT NULL"
     ");"},
};

#define CV_PG_SCHEMA_VERSION 1

#endif
