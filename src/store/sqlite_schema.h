/*
 * sqlite_schema.h — the SQLite backend's schema, as an ordered list of
 * migrations. Included by src/store/sqlite.c only: nothing else may know the
 * tables (store.h is the interface above them).
 *
 * Rules for changing it:
 *   - never edit a migration that has shipped; append a new one with the next
 *     version number (a database records every version applied in
 *     conveyor_schema, and a conveyor refuses a database whose highest version
 *     it does not know);
 *   - every migration runs inside the one transaction that applies all
 *     pending ones, so it must not contain BEGIN/COMMIT or PRAGMAs that cannot
 *     run inside a transaction (journal_mode, foreign_keys);
 *   - docs/store.md describes the tables: keep it in step.
 *
 * JSON values (input, output, error, state, history data) are stored as the
 * text jv_dump_string writes; times are integer milliseconds since the epoch.
 */
#ifndef CV_STORE_SQLITE_SCHEMA_H
#define CV_STORE_SQLITE_SCHEMA_H

/* 'CVYR': marks the file as conveyor's (`PRAGMA application_id`, file(1)). */
#define CV_SQLITE_APPLICATION_ID 0x43565952

struct cv_sqlite_migration {
    int version;
    const char *sql;
};

static const struct cv_sqlite_migration cv_sqlite_migrations[] = {
    {1,
     /* Deployed documents, immutable once stored. */
     "CREATE TABLE workflows ("
     "  namespace   TEXT NOT NULL,"
     "  name        TEXT NOT NULL,"
     "  version     TEXT NOT NULL,"
     "  text        TEXT NOT NULL,"
     "  deployed_at INTEGER NOT NULL,"
     "  PRIMARY KEY (namespace, name, version)"
     ") WITHOUT ROWID;"
     /* created_seq is the rowid: creation order, the pagination key. */
     "CREATE TABLE instances ("
     "  created_seq     INTEGER PRIMARY KEY,"
     "  id              TEXT NOT NULL UNIQUE,"
     "  namespace       TEXT NOT NULL,"
     "  name            TEXT NOT NULL,"
     "  version         TEXT NOT NULL,"
     "  status          TEXT NOT NULL,"
     "  input           TEXT NOT NULL,"
     "  output          TEXT,"
     "  error           TEXT,"
     "  state           TEXT,"
     "  epoch           INTEGER NOT NULL DEFAULT 0,"
     "  history_seq     INTEGER NOT NULL DEFAULT 0," /* seq of the last history event */
     "  idempotency_key TEXT UNIQUE,"
     "  created_at      INTEGER NOT NULL,"
     "  updated_at      INTEGER NOT NULL,"
     "  FOREIGN KEY (namespace, name, version) REFERENCES workflows (namespace, name, version)"
     ");"
     "CREATE INDEX instances_by_status ON instances (status, created_seq);"
     "CREATE INDEX instances_by_workflow ON instances (namespace, name, created_seq);"
     /* Append-only lifecycle events, seq 1, 2, ... per instance. */
     "CREATE TABLE history ("
     "  instance TEXT NOT NULL REFERENCES instances (id),"
     "  seq      INTEGER NOT NULL,"
     "  time     INTEGER NOT NULL,"
     "  type     TEXT NOT NULL,"
     "  task     TEXT,"
     "  data     TEXT,"
     "  PRIMARY KEY (instance, seq)"
     ") WITHOUT ROWID;"
     /* Durable timers: one per (instance, key). */
     "CREATE TABLE timers ("
     "  instance TEXT NOT NULL REFERENCES instances (id),"
     "  key      TEXT NOT NULL,"
     "  fire_at  INTEGER NOT NULL,"
     "  PRIMARY KEY (instance, key)"
     ") WITHOUT ROWID;"
     "CREATE INDEX timers_by_fire_at ON timers (fire_at);"},
    {2,
     /* Received and emitted CloudEvents, kept until expires_at so that a
      * listener that starts later still finds them. seq is the bus order. */
     "CREATE TABLE events ("
     "  seq         INTEGER PRIMARY KEY AUTOINCREMENT,"
     "  type        TEXT NOT NULL,"
     "  received_at INTEGER NOT NULL,"
     "  expires_at  INTEGER NOT NULL,"
     "  event       TEXT NOT NULL"
     ");"
     "CREATE INDEX events_by_expiry ON events (expires_at);"},
    {3,
     /* Where an event came from ('api': received; 'emit': an instance's
      * emit, which event sinks deliver), and named read positions on the
      * bus that must survive a restart (an event sink's last delivered). */
     "ALTER TABLE events ADD COLUMN origin TEXT NOT NULL DEFAULT 'api';"
     "CREATE TABLE cursors ("
     "  name TEXT PRIMARY KEY,"
     "  seq  INTEGER NOT NULL"
     ") WITHOUT ROWID;"},
    {4,
     /* Trained models (DESIGN.md decision 8, docs/models.md): versions 1, 2,
      * ... per name, never reused; the card is the model card's JSON, bytes
      * the model file. A rowid table, as SQLite advises for large rows; at
      * most one production version per name. */
     "CREATE TABLE models ("
     "  name       TEXT NOT NULL,"
     "  version    INTEGER NOT NULL,"
     "  kind       TEXT NOT NULL,"
     "  status     TEXT NOT NULL DEFAULT 'draft'"
     "             CHECK (status IN ('draft', 'approved', 'production', 'retired')),"
     "  card       TEXT NOT NULL,"
     "  bytes      BLOB NOT NULL,"
     "  created_at INTEGER NOT NULL,"
     "  updated_at INTEGER NOT NULL,"
     "  UNIQUE (name, version)"
     ");"
     "CREATE UNIQUE INDEX models_production ON models (name) WHERE status = 'production';"},
    {5,
     /* Review tasks (DESIGN.md decision 9, docs/tasks.md). `doc` is the
      * whole task object (title, description, data, form, escalate,
      * completion, history...); the columns repeat what lists filter and
      * sort on, written from doc on every change. seq is the opening order,
      * the last key of the queue order (priority desc, due, seq). instance
      * is NULL for tasks raised through the API. */
     "CREATE TABLE tasks ("
     "  seq              INTEGER PRIMARY KEY,"
     "  id               TEXT NOT NULL UNIQUE,"
     "  instance         TEXT,"
     "  task_ref         TEXT,"
     "  namespace        TEXT,"
     "  name             TEXT,"
     "  version          TEXT,"
     "  title            TEXT NOT NULL,"
     "  status           TEXT NOT NULL"
     "                   CHECK (status IN ('open', 'claimed', 'completed', 'cancelled', 'escalated')),"
     "  role             TEXT,"
     "  assignee         TEXT,"
     "  priority         INTEGER NOT NULL DEFAULT 0,"
     "  due_at           INTEGER,"
     "  claimed_by       TEXT,"
     "  claim_expires_at INTEGER,"
     "  opened_at        INTEGER NOT NULL,"
     "  completed_at     INTEGER,"
     "  doc              TEXT NOT NULL"
     ");"
     "CREATE INDEX tasks_queue ON tasks (status, priority DESC, due_at, seq);"
     "CREATE INDEX tasks_by_instance ON tasks (instance, status);"
     /* Every model prediction a reviewer saw in a form and confirmed or
      * changed: labeled examples for the next training run, and the
      * override ratio per model. */
     "CREATE TABLE feedback ("
     "  seq        INTEGER PRIMARY KEY,"
     "  task       TEXT NOT NULL,"
     "  instance   TEXT,"
     "  field      TEXT NOT NULL,"
     "  model      TEXT NOT NULL," /* name@version */
     "  overridden INTEGER NOT NULL,"
     "  reviewer   TEXT NOT NULL,"
     "  at         INTEGER NOT NULL,"
     "  example    TEXT NOT NULL," /* {input, predicted, corrected, ...} */
     "  UNIQUE (task, field)"
     ");"
     "CREATE INDEX feedback_by_model ON feedback (model, seq);"},
    {6,
     /* Per model name, where traffic goes besides the production version
      * (docs/models.md, "Canary and shadow"): a canary version taking a
      * share of the instances, and a shadow version predicting beside it
      * without changing outputs. No row = neither. */
     "CREATE TABLE model_routing ("
     "  name           TEXT PRIMARY KEY,"
     "  canary_version INTEGER,"
     "  canary_share   REAL NOT NULL DEFAULT 0 CHECK (canary_share >= 0 AND canary_share <= 1),"
     "  shadow_version INTEGER,"
     "  updated_at     INTEGER NOT NULL"
     ") WITHOUT ROWID;"
     /* The registry's generation: bumped by every change of models or
      * model_routing (the triggers), so that a process caching what a NAME
      * resolves to notices changes made by another process with one read. */
     "CREATE TABLE model_registry ("
     "  id         INTEGER PRIMARY KEY CHECK (id = 1),"
     "  generation INTEGER NOT NULL"
     ");"
     "INSERT INTO model_registry (id, generation) VALUES (1, 0);"
     "CREATE TRIGGER models_ins AFTER INSERT ON models"
     "  BEGIN UPDATE model_registry SET generation = generation + 1; END;"
     "CREATE TRIGGER models_upd AFTER UPDATE ON models"
     "  BEGIN UPDATE model_registry SET generation = generation + 1; END;"
     "CREATE TRIGGER model_routing_ins AFTER INSERT ON model_routing"
     "  BEGIN UPDATE model_registry SET generation = generation + 1; END;"
     "CREATE TRIGGER model_routing_upd AFTER UPDATE ON model_routing"
     "  BEGIN UPDATE model_registry SET generation = generation + 1; END;"
     "CREATE TRIGGER model_routing_del AFTER DELETE ON model_routing"
     "  BEGIN UPDATE model_registry SET generation = generation + 1; END;"},
    {7,
     /* Leases (docs/cluster.md): the node holding an unfinished instance and
      * until when (wall ms; 0 = free to take). Named leases: one node does a
      * cluster-wide job. */
     "ALTER TABLE instances ADD COLUMN owner TEXT;"
     "ALTER TABLE instances ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;"
     "CREATE INDEX instances_by_owner ON instances (owner) WHERE owner IS NOT NULL;"
     "CREATE TABLE leases ("
     "  name  TEXT PRIMARY KEY,"
     "  owner TEXT NOT NULL,"
     "  until INTEGER NOT NULL"
     ") WITHOUT ROWID;"},
};

#define CV_SQLITE_SCHEMA_VERSION 7

#endif
