/*
 * The generic batch statement: declared tables, rows added column by column, the outbox and
 * the offsets, rendered as one statement of data-modifying CTEs with every column as one
 * binary array parameter. The contract is in stmt.h.
 *
 * Rows are kept as cells (row-major per table) whose strings and buffers live in an arena
 * emptied by reset, and are serialised into PostgreSQL's binary array format only at render:
 * key merging must be able to replace an earlier row, which a stream of serialised bytes
 * cannot. Bulky per-row values (bytea, real[]) travel as ONE flat value per column, cut per
 * row by start and length on the server: as array elements they cost a third of the server's
 * time (bench/pipeline/README.md).
 */
#include "stmt.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"

/* ---- small helpers -------------------------------------------------------------------- */

static void *st__xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (q == NULL) {
    fprintf(stderr, "wk_stmt: out of memory\n");
    abort();
  }
  return q;
}

static void st__die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void st__die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "wk_stmt: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}

/*
 * The rows' strings and buffers: chunks that reset empties at once (one malloc and free per
 * string was the worker's largest cost). After a reset the chunks are merged into one as
 * large as all of them, so a steady stream of batches allocates nothing.
 */
typedef struct st__chunk_s {
  struct st__chunk_s *next;
  size_t used, cap;
  max_align_t data[]; /* cap bytes */
} st__chunk_t;

#define ST__CHUNK_MIN ((size_t)64 * 1024)

static void *st__arena_alloc(st__chunk_t **arena, size_t n) {
  n = (n + 7) & ~(size_t)7;
  st__chunk_t *c = *arena;
  if (c == NULL || c->cap - c->used < n) {
    size_t cap = n > ST__CHUNK_MIN ? n : ST__CHUNK_MIN;
    c = st__xrealloc(NULL, sizeof *c + cap);
    c->next = *arena;
    c->used = 0;
    c->cap = cap;
    *arena = c;
  }
  void *p = (char *)c->data + c->used;
  c->used += n;
  return p;
}

static void st__arena_reset(st__chunk_t **arena) {
  st__chunk_t *c = *arena;
  if (c == NULL) return;
  if (c->next == NULL) {
    c->used = 0;
    return;
  }
  size_t total = 0;
  while (c != NULL) {
    st__chunk_t *next = c->next;
    total += c->cap;
    free(c);
    c = next;
  }
  *arena = NULL;
  st__arena_alloc(arena, total);
  (*arena)->used = 0;
}

static void st__arena_free(st__chunk_t **arena) {
  while (*arena != NULL) {
    st__chunk_t *next = (*arena)->next;
    free(*arena);
    *arena = next;
  }
}

typedef struct st__buf_s {
  char *p;
  size_t len, cap;
} st__buf_t;

/* Room for n more bytes (and a terminating zero, for the text parameter). */
static void buf_reserve(st__buf_t *b, size_t n) {
  if (b->len + n + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + n + 1) cap *= 2;
  b->p = st__xrealloc(b->p, cap);
  b->cap = cap;
}

static void buf_put(st__buf_t *b, const void *s, size_t n) {
  buf_reserve(b, n);
  if (n) memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void buf_puts(st__buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_printf(st__buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(st__buf_t *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof tmp) st__die("internal: SQL fragment too long");
  buf_put(b, tmp, (size_t)n);
}

/* ---- binary wire formats -------------------------------------------------------------- */

/*
 * PostgreSQL's binary formats (network byte order): a one-dimensional array is ndim, has-nulls
 * flag, element type OID, then the length and lower bound of its dimension (an empty array has
 * ndim 0 and no dimension), then each element as its byte length (-1: NULL) and bytes. The
 * element type must be exactly the one the statement casts to, or the server refuses it.
 */
enum {
  ST__OID_BOOL = 16,
  ST__OID_INT8 = 20,
  ST__OID_INT4 = 23,
  ST__OID_TEXT = 25,
  ST__OID_FLOAT4 = 700
};

/* Stored byte by byte, not through memcpy: a batch writes tens of thousands of these, and a
 * library call each was most of the builder's time (the profile's "memmove"). */
static inline void bin_put32(char *d, uint32_t v) {
  d[0] = (char)(v >> 24);
  d[1] = (char)(v >> 16);
  d[2] = (char)(v >> 8);
  d[3] = (char)v;
}

static void bin_u32(st__buf_t *b, uint32_t v) {
  buf_reserve(b, 4);
  bin_put32(b->p + b->len, v);
  b->len += 4;
}

static void bin_array(st__buf_t *b, uint32_t oid, size_t n, bool has_nulls) {
  b->len = 0;
  bin_u32(b, n ? 1 : 0);
  bin_u32(b, has_nulls ? 1 : 0);
  bin_u32(b, oid);
  if (n == 0) return;
  bin_u32(b, (uint32_t)n);
  bin_u32(b, 1);
}

static void bin_null(st__buf_t *b) { bin_u32(b, UINT32_MAX); }

static void bin_bytes(st__buf_t *b, const void *p, size_t n) {
  buf_reserve(b, 4 + n);
  bin_put32(b->p + b->len, (uint32_t)n);
  if (n) memcpy(b->p + b->len + 4, p, n);
  b->len += 4 + n;
}

static void bin_f4s(st__buf_t *b, const float *f, size_t n) {
  buf_reserve(b, 8 * n);
  char *d = b->p + b->len;
  for (size_t i = 0; i < n; i++, d += 8) {
    uint32_t bits;
    memcpy(&bits, &f[i], sizeof bits); /* a fixed-size copy: compiled to a register move */
    bin_put32(d, 4);
    bin_put32(d + 4, bits);
  }
  b->len += 8 * n;
}

static void bin_i4(st__buf_t *b, int32_t v) {
  buf_reserve(b, 8);
  bin_put32(b->p + b->len, 4);
  bin_put32(b->p + b->len + 4, (uint32_t)v);
  b->len += 8;
}

static void bin_i8(st__buf_t *b, int64_t v) {
  buf_reserve(b, 12);
  bin_put32(b->p + b->len, 8);
  bin_put32(b->p + b->len + 4, (uint32_t)((uint64_t)v >> 32));
  bin_put32(b->p + b->len + 8, (uint32_t)v);
  b->len += 12;
}

static void bin_bool(st__buf_t *b, bool v) {
  buf_reserve(b, 5);
  bin_put32(b->p + b->len, 1);
  b->p[b->len + 4] = v ? 1 : 0;
  b->len += 5;
}

/* ---- the builder ---------------------------------------------------------------------- */

/* One value of a row. Strings and buffers point into the arena. */
typedef struct st__cell_s {
  union {
    int64_t i;
    float f;
    bool b;
    struct {
      const void *p;
      size_t n; /* bytes (text: strlen; bytea: bytes; reals: floats) */
    } s;
  } v;
  bool null;
} st__cell_t;

typedef struct st__table_s {
  const wk_table_t *decl;
  int first_param;     /* 1-based number of its first parameter */
  int *col_param;      /* (n_cols) parameter of the column (flat value for bytea/reals) */
  st__cell_t *cells;   /* (cap_rows * n_cols) */
  size_t n_rows, cap_rows;
  size_t merge_col;    /* decl->merge_by's column, or SIZE_MAX */
  size_t *index;       /* key_cols > 0: open addressing, key hash -> row + 1 (0 = empty) */
  size_t n_index;      /* slots, a power of two, at least twice n_rows */
} st__table_t;

typedef struct st__outbox_s {
  const char *alert_id, *domain, *key, *topic;
  const uint8_t *payload;
  size_t payload_len;
} st__outbox_t;

typedef struct st__offset_s {
  const char *topic;
  int32_t partition;
  int64_t next_offset;
} st__offset_t;

/* One statement the builder renders: all of the batch, or one of its two parts. */
typedef struct st__part_s {
  char *sql;
  int n_params;
  int *global;         /* (n_params) 0-based index of each of its parameters in bufs */
  const char **values; /* (n_params), filled by render */
  int *lengths, *formats;
} st__part_t;

struct wk_stmt_s {
  st__chunk_t *arena;
  char *group;
  st__part_t parts[3]; /* by wk_stmt_part_t */
  st__table_t *tables;
  size_t n_tables;
  st__outbox_t *outbox;
  size_t n_outbox, cap_outbox;
  st__offset_t *offsets;
  size_t n_offsets, cap_offsets;
  int outbox_param;    /* first of the outbox's 7 parameters */
  int group_param;     /* the consumer group (text) */
  int offsets_param;   /* first of the offsets' 3 parameters */
  int n_params;
  /* The row being added. */
  size_t cur_table;    /* SIZE_MAX: none */
  size_t cur_col;
  /* Rendering. */
  st__buf_t *bufs;     /* (n_params) */
};

static const char *const st__type_names[] = {"text", "jsonb", "float4", "int4", "int8",
                                             "bool", "time_ms", "bytea", "reals"};

/* Parameters a column needs: bulky ones are a flat value plus start and length arrays. */
static int st__col_params(wk_col_type_t t) { return t == WK_COL_BYTEA || t == WK_COL_REALS ? 3 : 1; }

static bool st__ident_ok(const char *s) {
  if (s == NULL || s[0] == '\0' || strlen(s) > WK_SCHEMA_NAME_MAX) return false;
  for (size_t i = 0; s[i]; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9'))) return false;
  }
  return true;
}

static svc_err_t st__check_decl(const wk_table_t *tables, size_t n_tables, char *errstr,
                                size_t errstr_size) {
  for (size_t t = 0; t < n_tables; t++) {
    const wk_table_t *d = &tables[t];
    if (!st__ident_ok(d->name)) {
      snprintf(errstr, errstr_size, "batch statement: table %zu has name \"%s\"; use a plain "
               "lower-case identifier [a-z_][a-z0-9_]*", t, d->name ? d->name : "(null)");
      return SVC_ECONFIG;
    }
    if (d->role != WK_TABLE_RESULTS && d->role != WK_TABLE_STATE) {
      snprintf(errstr, errstr_size, "batch statement: table %s has role %d", d->name,
               (int)d->role);
      return SVC_ECONFIG;
    }
    if (d->n_cols == 0 || d->cols == NULL || d->key_cols > d->n_cols) {
      snprintf(errstr, errstr_size, "batch statement: table %s has %zu columns and %zu key "
               "columns (needs at least one column and no more key columns than columns)",
               d->name, d->n_cols, d->key_cols);
      return SVC_ECONFIG;
    }
    for (size_t c = 0; c < d->n_cols; c++) {
      if (!st__ident_ok(d->cols[c].name)) {
        snprintf(errstr, errstr_size, "batch statement: table %s column %zu has name \"%s\"; "
                 "use a plain lower-case identifier", d->name, c,
                 d->cols[c].name ? d->cols[c].name : "(null)");
        return SVC_ECONFIG;
      }
      if ((unsigned)d->cols[c].type > WK_COL_REALS) {
        snprintf(errstr, errstr_size, "batch statement: table %s column %s has type %d",
                 d->name, d->cols[c].name, (int)d->cols[c].type);
        return SVC_ECONFIG;
      }
      for (size_t k = 0; k < c; k++)
        if (strcmp(d->cols[k].name, d->cols[c].name) == 0) {
          snprintf(errstr, errstr_size, "batch statement: table %s declares column %s twice",
                   d->name, d->cols[c].name);
          return SVC_ECONFIG;
        }
    }
    if (d->merge_by != NULL) {
      size_t c = 0;
      while (c < d->n_cols && strcmp(d->cols[c].name, d->merge_by) != 0) c++;
      if (c == d->n_cols || d->key_cols == 0 ||
          (d->cols[c].type != WK_COL_INT4 && d->cols[c].type != WK_COL_INT8 &&
           d->cols[c].type != WK_COL_TIME_MS)) {
        snprintf(errstr, errstr_size, "batch statement: table %s merges by \"%s\", which must "
                 "be one of its int4/int8/time_ms columns (and the table needs key columns)", d->name,
                 d->merge_by);
        return SVC_ECONFIG;
      }
    }
    for (size_t k = 0; k < t; k++)
      if (strcmp(tables[k].name, d->name) == 0) {
        snprintf(errstr, errstr_size, "batch statement: table %s is declared twice", d->name);
        return SVC_ECONFIG;
      }
    if (strcmp(d->name, "outbox") == 0 || strcmp(d->name, "kafka_offsets") == 0) {
      snprintf(errstr, errstr_size, "batch statement: table %s is the core's own; use "
               "wk_stmt_add_outbox / wk_stmt_add_offset", d->name);
      return SVC_ECONFIG;
    }
  }
  return SVC_OK;
}

/* The SQL array type a column's values travel as. */
static const char *st__array_type(wk_col_type_t t) {
  switch (t) {
  case WK_COL_TEXT:
  case WK_COL_JSONB: return "text[]";
  case WK_COL_FLOAT4: return "real[]";
  case WK_COL_INT4: return "integer[]";
  case WK_COL_INT8:
  case WK_COL_TIME_MS: return "bigint[]";
  case WK_COL_BOOL: return "boolean[]";
  case WK_COL_BYTEA: return "bytea";
  case WK_COL_REALS: return "real[]";
  }
  return "?";
}

/* Assigns every parameter its number (1-based, in the order below), once. */
static void st__number_params(wk_stmt_t *st) {
  int p = 1;
  for (size_t t = 0; t < st->n_tables; t++) {
    st__table_t *tb = &st->tables[t];
    tb->first_param = p;
    tb->col_param = st__xrealloc(NULL, tb->decl->n_cols * sizeof *tb->col_param);
    for (size_t c = 0; c < tb->decl->n_cols; c++) {
      tb->col_param[c] = p;
      p += st__col_params(tb->decl->cols[c].type);
    }
  }
  st->outbox_param = p;
  p += 7;
  st->group_param = p++;
  st->offsets_param = p;
  p += 3;
  st->n_params = p - 1;
}

/* Whether what plays `role` (a table's role, ST__OUTBOX_ROLE, ST__OFFSETS_ROLE) is in `part`. */
static bool st__in_part(wk_stmt_part_t part, int role) {
  if (part == WK_STMT_ALL) return true;
  return part == WK_STMT_RESULTS ? role == WK_TABLE_RESULTS : role == WK_TABLE_STATE;
}
#define ST__OUTBOX_ROLE WK_TABLE_RESULTS  /* alerts are idempotent by id, like results */
#define ST__OFFSETS_ROLE WK_TABLE_STATE   /* offsets move with the state they cover */

/*
 * Builds the SQL text of one part; it depends on the declaration only. Parameters (global
 * numbering of st__number_params): each table's columns (a bulky column: its flat value, then
 * the start and length arrays), the outbox's alert_id, domain, key, topic, flat payload,
 * start, length; the consumer group; the offsets' topic, partition, next_offset. A part's
 * statement numbers the parameters it uses $1.. in that same order (map: global -> local).
 */
static void st__build_sql(wk_stmt_t *st, const char *schema, wk_stmt_part_t part) {
  st__part_t *pt = &st->parts[part];
  int *map = st__xrealloc(NULL, (size_t)(st->n_params + 1) * sizeof *map);
  memset(map, 0, (size_t)(st->n_params + 1) * sizeof *map);
  pt->global = st__xrealloc(NULL, (size_t)st->n_params * sizeof *pt->global);
  pt->n_params = 0;
#define ST__USE(g)                                                                         \
  do {                                                                                     \
    map[(g)] = ++pt->n_params;                                                             \
    pt->global[pt->n_params - 1] = (g) - 1;                                                \
  } while (0)
  for (size_t t = 0; t < st->n_tables; t++) {
    const st__table_t *tb = &st->tables[t];
    if (!st__in_part(part, (int)tb->decl->role)) continue;
    for (size_t c = 0; c < tb->decl->n_cols; c++)
      for (int i = 0; i < st__col_params(tb->decl->cols[c].type); i++) ST__USE(tb->col_param[c] + i);
  }
  bool outbox = st__in_part(part, ST__OUTBOX_ROLE), offsets = st__in_part(part, ST__OFFSETS_ROLE);
  if (outbox)
    for (int i = 0; i < 7; i++) ST__USE(st->outbox_param + i);
  if (offsets) {
    ST__USE(st->group_param);
    for (int i = 0; i < 3; i++) ST__USE(st->offsets_param + i);
  }
#undef ST__USE

  st__buf_t q = {0};
  /* Every flat value converted once (MATERIALIZED), then sliced per row. */
  buf_puts(&q, "WITH v AS MATERIALIZED (SELECT ");
  bool any_flat = false;
  for (size_t t = 0; t < st->n_tables; t++) {
    const st__table_t *tb = &st->tables[t];
    if (!st__in_part(part, (int)tb->decl->role)) continue;
    for (size_t c = 0; c < tb->decl->n_cols; c++) {
      wk_col_type_t ty = tb->decl->cols[c].type;
      if (st__col_params(ty) == 3) {
        buf_printf(&q, "%s$%d::%s AS f%d", any_flat ? ", " : "", map[tb->col_param[c]],
                   st__array_type(ty), tb->col_param[c]);
        any_flat = true;
      }
    }
  }
  if (outbox) {
    buf_printf(&q, "%s$%d::bytea AS f%d", any_flat ? ", " : "", map[st->outbox_param + 4],
               st->outbox_param + 4);
    any_flat = true;
  }
  if (!any_flat) buf_puts(&q, "1 AS f0");
  buf_puts(&q, ")");

  for (size_t t = 0; t < st->n_tables; t++) {
    const st__table_t *tb = &st->tables[t];
    const wk_table_t *d = tb->decl;
    if (!st__in_part(part, (int)d->role)) continue;
    buf_printf(&q, ",\nt%zu AS (\n  INSERT INTO \"%s\".\"%s\" AS t (", t, schema, d->name);
    for (size_t c = 0; c < d->n_cols; c++)
      buf_printf(&q, "%s\"%s\"", c ? ", " : "", d->cols[c].name);
    buf_puts(&q, ")\n  SELECT ");
    for (size_t c = 0; c < d->n_cols; c++) {
      int pp = tb->col_param[c];
      if (c) buf_puts(&q, ", ");
      switch (d->cols[c].type) {
      case WK_COL_JSONB: buf_printf(&q, "u.c%d::jsonb", pp); break;
      case WK_COL_TIME_MS: buf_printf(&q, "to_timestamp(u.c%d::double precision / 1000)", pp); break;
      case WK_COL_BYTEA: buf_printf(&q, "substring(v.f%d FROM u.c%d FOR u.c%d)", pp, pp + 1, pp + 2); break;
      case WK_COL_REALS: buf_printf(&q, "v.f%d[u.c%d:u.c%d + u.c%d - 1]", pp, pp + 1, pp + 1, pp + 2); break;
      default: buf_printf(&q, "u.c%d", pp); break;
      }
    }
    buf_puts(&q, "\n  FROM v, unnest(");
    bool first = true;
    for (size_t c = 0; c < d->n_cols; c++) {
      int pp = tb->col_param[c];
      wk_col_type_t ty = d->cols[c].type;
      if (st__col_params(ty) == 3)
        buf_printf(&q, "%s$%d::integer[], $%d::integer[]", first ? "" : ", ", map[pp + 1],
                   map[pp + 2]);
      else
        buf_printf(&q, "%s$%d::%s", first ? "" : ", ", map[pp], st__array_type(ty));
      first = false;
    }
    buf_puts(&q, ") AS u(");
    first = true;
    for (size_t c = 0; c < d->n_cols; c++) {
      int pp = tb->col_param[c];
      if (st__col_params(d->cols[c].type) == 3)
        buf_printf(&q, "%sc%d, c%d", first ? "" : ", ", pp + 1, pp + 2);
      else
        buf_printf(&q, "%sc%d", first ? "" : ", ", pp);
      first = false;
    }
    buf_puts(&q, ")\n");
    if (d->on_conflict && d->on_conflict[0]) {
      buf_puts(&q, "  ");
      buf_puts(&q, d->on_conflict);
      buf_puts(&q, "\n");
    }
    buf_puts(&q, "  RETURNING 1)");
  }
  if (outbox) {
    int o = st->outbox_param;
    buf_printf(&q,
               ",\no AS (\n"
               "  INSERT INTO \"%s\".outbox (alert_id, domain, key, topic, payload)\n"
               "  SELECT a, d, k, tp, substring(v.f%d FROM s0 FOR sl)\n"
               "  FROM v, unnest($%d::text[], $%d::text[], $%d::text[], $%d::text[],\n"
               "                 $%d::integer[], $%d::integer[]) AS u(a, d, k, tp, s0, sl)\n"
               "  ON CONFLICT (alert_id) DO NOTHING\n"
               "  RETURNING 1)",
               schema, o + 4, map[o], map[o + 1], map[o + 2], map[o + 3], map[o + 5],
               map[o + 6]);
  }
  if (offsets) {
    int k = st->offsets_param;
    buf_printf(&q,
               ",\nk AS (\n"
               "  INSERT INTO \"%s\".kafka_offsets AS ko (consumer_group, topic, partition, "
               "next_offset)\n"
               "  SELECT $%d::text, tp, pa, n\n"
               "  FROM unnest($%d::text[], $%d::integer[], $%d::bigint[]) AS u(tp, pa, n)\n"
               "  ON CONFLICT (consumer_group, topic, partition) DO UPDATE\n"
               "    SET next_offset = EXCLUDED.next_offset, updated_at = now()\n"
               "  WHERE ko.next_offset < EXCLUDED.next_offset\n"
               "  RETURNING 1)",
               schema, map[st->group_param], map[k], map[k + 1], map[k + 2]);
  }
  /* What each part changed, summed by role: always four columns (0 for what is not here). */
  buf_puts(&q, "\nSELECT ");
  for (int role = WK_TABLE_RESULTS; role <= WK_TABLE_STATE; role++) {
    bool any = false;
    for (size_t t = 0; t < st->n_tables; t++) {
      if ((int)st->tables[t].decl->role != role || !st__in_part(part, role)) continue;
      buf_printf(&q, "%s(SELECT count(*) FROM t%zu)", any ? " + " : "", t);
      any = true;
    }
    if (!any) buf_puts(&q, "0::bigint");
    buf_puts(&q, ", ");
  }
  buf_puts(&q, outbox ? "(SELECT count(*) FROM o), " : "0::bigint, ");
  buf_puts(&q, offsets ? "(SELECT count(*) FROM k)" : "0::bigint");
  pt->sql = q.p;
  free(map);
  size_t np = pt->n_params ? (size_t)pt->n_params : 1;
  pt->values = st__xrealloc(NULL, np * sizeof *pt->values);
  pt->lengths = st__xrealloc(NULL, np * sizeof *pt->lengths);
  pt->formats = st__xrealloc(NULL, np * sizeof *pt->formats);
}

svc_err_t wk_stmt_new(const char *schema, const char *group, const wk_table_t *tables,
                      size_t n_tables, wk_stmt_t **out, char *errstr, size_t errstr_size) {
  *out = NULL;
  svc_err_t err = wk_schema_name_check(schema, errstr, errstr_size);
  if (err) return err;
  if (group == NULL || group[0] == '\0') {
    snprintf(errstr, errstr_size, "batch statement: consumer group is empty");
    return SVC_ECONFIG;
  }
  if (n_tables > 0 && tables == NULL) {
    snprintf(errstr, errstr_size, "batch statement: %zu tables but no declarations", n_tables);
    return SVC_ECONFIG;
  }
  err = st__check_decl(tables, n_tables, errstr, errstr_size);
  if (err) return err;
  wk_stmt_t *st = st__xrealloc(NULL, sizeof *st);
  memset(st, 0, sizeof *st);
  size_t glen = strlen(group) + 1;
  st->group = st__xrealloc(NULL, glen);
  memcpy(st->group, group, glen);
  st->n_tables = n_tables;
  st->tables = st__xrealloc(NULL, (n_tables ? n_tables : 1) * sizeof *st->tables);
  memset(st->tables, 0, (n_tables ? n_tables : 1) * sizeof *st->tables);
  for (size_t t = 0; t < n_tables; t++) {
    st__table_t *tb = &st->tables[t];
    tb->decl = &tables[t];
    tb->merge_col = SIZE_MAX;
    for (size_t c = 0; tables[t].merge_by && c < tables[t].n_cols; c++)
      if (strcmp(tables[t].cols[c].name, tables[t].merge_by) == 0) tb->merge_col = c;
  }
  st->cur_table = SIZE_MAX;
  st__number_params(st);
  for (int part = WK_STMT_ALL; part <= WK_STMT_STATE; part++)
    st__build_sql(st, schema, (wk_stmt_part_t)part);
  size_t np = (size_t)st->n_params;
  st->bufs = st__xrealloc(NULL, np * sizeof *st->bufs);
  memset(st->bufs, 0, np * sizeof *st->bufs);
  *out = st;
  return SVC_OK;
}

void wk_stmt_reset(wk_stmt_t *st) {
  st__arena_reset(&st->arena);
  for (size_t t = 0; t < st->n_tables; t++) {
    st__table_t *tb = &st->tables[t];
    tb->n_rows = 0;
    if (tb->index) memset(tb->index, 0, tb->n_index * sizeof *tb->index);
  }
  st->n_outbox = st->n_offsets = 0;
  st->cur_table = SIZE_MAX;
}

void wk_stmt_free(wk_stmt_t *st) {
  if (st == NULL) return;
  st__arena_free(&st->arena);
  for (size_t t = 0; t < st->n_tables; t++) {
    free(st->tables[t].cells);
    free(st->tables[t].index);
    free(st->tables[t].col_param);
  }
  free(st->tables);
  free(st->outbox);
  free(st->offsets);
  for (int i = 0; i < st->n_params; i++) free(st->bufs[i].p);
  free(st->bufs);
  for (int part = WK_STMT_ALL; part <= WK_STMT_STATE; part++) {
    st__part_t *pt = &st->parts[part];
    free(pt->sql);
    free(pt->global);
    free(pt->values);
    free(pt->lengths);
    free(pt->formats);
  }
  free(st->group);
  free(st);
}

/* ---- adding rows ---------------------------------------------------------------------- */

static const void *st__dup(wk_stmt_t *st, const void *p, size_t n, bool nul) {
  char *d = st__arena_alloc(&st->arena, n + (nul ? 1 : 0));
  if (n) memcpy(d, p, n);
  if (nul) d[n] = '\0';
  return d;
}

void wk_stmt_row_begin(wk_stmt_t *st, size_t table) {
  if (st->cur_table != SIZE_MAX)
    st__die("row_begin(%zu) while a row of table %s is open", table,
            st->tables[st->cur_table].decl->name);
  if (table >= st->n_tables) st__die("row_begin: table %zu of %zu", table, st->n_tables);
  st__table_t *tb = &st->tables[table];
  size_t nc = tb->decl->n_cols;
  if (tb->n_rows == tb->cap_rows) { /* room for the open row, appended after the last */
    tb->cap_rows = tb->cap_rows ? 2 * tb->cap_rows : 64;
    tb->cells = st__xrealloc(tb->cells, tb->cap_rows * nc * sizeof *tb->cells);
  }
  st->cur_table = table;
  st->cur_col = 0;
}

/* The next cell of the open row, checked against the column's type. */
static st__cell_t *st__next(wk_stmt_t *st, const char *what, unsigned types) {
  if (st->cur_table == SIZE_MAX) st__die("%s without row_begin", what);
  st__table_t *tb = &st->tables[st->cur_table];
  const wk_table_t *d = tb->decl;
  if (st->cur_col >= d->n_cols)
    st__die("%s: table %s has only %zu columns", what, d->name, d->n_cols);
  const wk_col_t *col = &d->cols[st->cur_col];
  if (!(types & (1u << col->type)))
    st__die("%s for column %s.%s of type %s", what, d->name, col->name,
            st__type_names[col->type]);
  st__cell_t *c = &tb->cells[tb->n_rows * d->n_cols + st->cur_col++];
  c->null = false;
  return c;
}

#define ST__T(t) (1u << (t))

void wk_stmt_text(wk_stmt_t *st, const char *s) {
  st__cell_t *c = st__next(st, "wk_stmt_text", ST__T(WK_COL_TEXT) | ST__T(WK_COL_JSONB));
  if (s == NULL) {
    c->null = true;
    return;
  }
  size_t n = strlen(s);
  c->v.s.p = st__dup(st, s, n, true);
  c->v.s.n = n;
}

void wk_stmt_float4(wk_stmt_t *st, float v) {
  st__next(st, "wk_stmt_float4", ST__T(WK_COL_FLOAT4))->v.f = v;
}

void wk_stmt_int4(wk_stmt_t *st, int32_t v) {
  st__next(st, "wk_stmt_int4", ST__T(WK_COL_INT4))->v.i = v;
}

void wk_stmt_int8(wk_stmt_t *st, int64_t v) {
  st__next(st, "wk_stmt_int8", ST__T(WK_COL_INT8) | ST__T(WK_COL_TIME_MS))->v.i = v;
}

void wk_stmt_bool(wk_stmt_t *st, bool v) {
  st__next(st, "wk_stmt_bool", ST__T(WK_COL_BOOL))->v.b = v;
}

void wk_stmt_bytes(wk_stmt_t *st, const uint8_t *p, size_t n) {
  st__cell_t *c = st__next(st, "wk_stmt_bytes", ST__T(WK_COL_BYTEA));
  if (n > INT32_MAX) st__die("wk_stmt_bytes: %zu bytes", n);
  c->v.s.p = st__dup(st, p, n, false);
  c->v.s.n = n;
}

void wk_stmt_reals(wk_stmt_t *st, const float *v, size_t n) {
  st__cell_t *c = st__next(st, "wk_stmt_reals", ST__T(WK_COL_REALS));
  if (n > INT32_MAX / 8) st__die("wk_stmt_reals: %zu values", n);
  c->v.s.p = st__dup(st, v, n * sizeof *v, false);
  c->v.s.n = n;
}

void wk_stmt_null(wk_stmt_t *st) {
  st__next(st, "wk_stmt_null", ~0u)->null = true;
}

static uint64_t st__hash_bytes(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

static uint64_t st__key_hash(const st__table_t *tb, const st__cell_t *row) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t c = 0; c < tb->decl->key_cols; c++) {
    const st__cell_t *x = &row[c];
    if (x->null) {
      h = st__hash_bytes(h, "\xff", 1);
      continue;
    }
    switch (tb->decl->cols[c].type) {
    case WK_COL_TEXT:
    case WK_COL_JSONB:
    case WK_COL_BYTEA: h = st__hash_bytes(h, x->v.s.p, x->v.s.n); break;
    case WK_COL_REALS: h = st__hash_bytes(h, x->v.s.p, x->v.s.n * sizeof(float)); break;
    case WK_COL_FLOAT4: h = st__hash_bytes(h, &x->v.f, sizeof x->v.f); break;
    case WK_COL_BOOL: h = st__hash_bytes(h, &x->v.b, sizeof x->v.b); break;
    default: h = st__hash_bytes(h, &x->v.i, sizeof x->v.i); break;
    }
    h = st__hash_bytes(h, "\0", 1); /* ("ab","c") and ("a","bc") differ */
  }
  return h;
}

static bool st__key_eq(const st__table_t *tb, const st__cell_t *a, const st__cell_t *b) {
  for (size_t c = 0; c < tb->decl->key_cols; c++) {
    if (a[c].null || b[c].null) {
      if (a[c].null != b[c].null) return false;
      continue;
    }
    switch (tb->decl->cols[c].type) {
    case WK_COL_TEXT:
    case WK_COL_JSONB:
    case WK_COL_BYTEA:
      if (a[c].v.s.n != b[c].v.s.n || memcmp(a[c].v.s.p, b[c].v.s.p, a[c].v.s.n) != 0)
        return false;
      break;
    case WK_COL_REALS:
      if (a[c].v.s.n != b[c].v.s.n ||
          memcmp(a[c].v.s.p, b[c].v.s.p, a[c].v.s.n * sizeof(float)) != 0)
        return false;
      break;
    case WK_COL_FLOAT4:
      if (memcmp(&a[c].v.f, &b[c].v.f, sizeof(float)) != 0) return false;
      break;
    case WK_COL_BOOL:
      if (a[c].v.b != b[c].v.b) return false;
      break;
    default:
      if (a[c].v.i != b[c].v.i) return false;
      break;
    }
  }
  return true;
}

/* The slot of the key of `row` (an empty one if absent). */
static size_t *st__slot(st__table_t *tb, const st__cell_t *row) {
  size_t mask = tb->n_index - 1, nc = tb->decl->n_cols;
  for (size_t i = (size_t)st__key_hash(tb, row) & mask;; i = (i + 1) & mask) {
    size_t *slot = &tb->index[i];
    if (*slot == 0 || st__key_eq(tb, &tb->cells[(*slot - 1) * nc], row)) return slot;
  }
}

/* Keeps the index at most half full for n_rows + 1 rows. */
static void st__index_grow(st__table_t *tb) {
  if (2 * (tb->n_rows + 1) <= tb->n_index) return;
  size_t n = tb->n_index ? tb->n_index : 256;
  while (n < 2 * (tb->n_rows + 1)) n *= 2;
  free(tb->index);
  tb->index = st__xrealloc(NULL, n * sizeof *tb->index);
  memset(tb->index, 0, n * sizeof *tb->index);
  tb->n_index = n;
  size_t nc = tb->decl->n_cols;
  for (size_t r = 0; r < tb->n_rows; r++) *st__slot(tb, &tb->cells[r * nc]) = r + 1;
}

void wk_stmt_row_end(wk_stmt_t *st) {
  if (st->cur_table == SIZE_MAX) st__die("row_end without row_begin");
  st__table_t *tb = &st->tables[st->cur_table];
  const wk_table_t *d = tb->decl;
  if (st->cur_col != d->n_cols)
    st__die("row_end: table %s got %zu of its %zu columns", d->name, st->cur_col, d->n_cols);
  st->cur_table = SIZE_MAX;
  st__cell_t *row = &tb->cells[tb->n_rows * d->n_cols];
  if (d->key_cols == 0) {
    tb->n_rows++;
    return;
  }
  st__index_grow(tb);
  size_t *slot = st__slot(tb, row);
  if (*slot != 0) { /* the same key earlier in the batch: the newest row replaces it */
    st__cell_t *old = &tb->cells[(*slot - 1) * d->n_cols];
    size_t m = tb->merge_col;
    if (m != SIZE_MAX && !row[m].null && !old[m].null && row[m].v.i < old[m].v.i) return;
    memcpy(old, row, d->n_cols * sizeof *row);
    return;
  }
  *slot = ++tb->n_rows;
}

size_t wk_stmt_n_rows(const wk_stmt_t *st, size_t table) {
  if (table >= st->n_tables) st__die("n_rows: table %zu of %zu", table, st->n_tables);
  return st->tables[table].n_rows;
}

static const char *st__dup_str(wk_stmt_t *st, const char *s, const char *field) {
  if (s == NULL) st__die("required field %s is NULL", field);
  return st__dup(st, s, strlen(s), true);
}

void wk_stmt_add_outbox(wk_stmt_t *st, const wk_outbox_row_t *o) {
  if (st->n_outbox == st->cap_outbox) {
    st->cap_outbox = st->cap_outbox ? 2 * st->cap_outbox : 16;
    st->outbox = st__xrealloc(st->outbox, st->cap_outbox * sizeof *st->outbox);
  }
  if (o->payload_len > INT32_MAX) st__die("outbox payload of %zu bytes", o->payload_len);
  st__outbox_t *d = &st->outbox[st->n_outbox++];
  d->alert_id = st__dup_str(st, o->alert_id, "alert_id");
  d->domain = st__dup_str(st, o->domain, "domain");
  d->key = st__dup_str(st, o->key ? o->key : "", "key");
  d->topic = st__dup_str(st, o->topic, "topic");
  d->payload = st__dup(st, o->payload, o->payload_len, false);
  d->payload_len = o->payload_len;
}

void wk_stmt_add_offset(wk_stmt_t *st, const char *topic, int32_t partition, int64_t next_offset) {
  if (topic == NULL) st__die("add_offset: topic is NULL");
  for (size_t i = 0; i < st->n_offsets; i++) {
    st__offset_t *d = &st->offsets[i];
    if (d->partition == partition && strcmp(d->topic, topic) == 0) {
      if (next_offset > d->next_offset) d->next_offset = next_offset;
      return;
    }
  }
  if (st->n_offsets == st->cap_offsets) {
    st->cap_offsets = st->cap_offsets ? 2 * st->cap_offsets : 16;
    st->offsets = st__xrealloc(st->offsets, st->cap_offsets * sizeof *st->offsets);
  }
  st__offset_t *d = &st->offsets[st->n_offsets++];
  d->topic = st__dup_str(st, topic, "topic");
  d->partition = partition;
  d->next_offset = next_offset;
}

/* ---- rendering ------------------------------------------------------------------------ */

static void st__render_column(wk_stmt_t *st, const st__table_t *tb, size_t c) {
  const wk_col_type_t ty = tb->decl->cols[c].type;
  const size_t nc = tb->decl->n_cols, nr = tb->n_rows;
  const int pp = tb->col_param[c] - 1; /* 0-based buffer */
  bool nulls = false;
  for (size_t r = 0; r < nr; r++) nulls |= tb->cells[r * nc + c].null;
  if (st__col_params(ty) == 3) {
    /* The flat value, then where each row's part starts (1-based) and how long it is. */
    st__buf_t *flat = &st->bufs[pp], *s0 = &st->bufs[pp + 1], *sl = &st->bufs[pp + 2];
    size_t total = 0;
    for (size_t r = 0; r < nr; r++) {
      const st__cell_t *x = &tb->cells[r * nc + c];
      if (!x->null) total += x->v.s.n;
    }
    if (total > INT32_MAX / 8) st__die("table %s column %s: %zu values in one batch",
                                       tb->decl->name, tb->decl->cols[c].name, total);
    if (ty == WK_COL_REALS) bin_array(flat, ST__OID_FLOAT4, total, false);
    else flat->len = 0;
    bin_array(s0, ST__OID_INT4, nr, nulls);
    bin_array(sl, ST__OID_INT4, nr, nulls);
    size_t at = 0;
    for (size_t r = 0; r < nr; r++) {
      const st__cell_t *x = &tb->cells[r * nc + c];
      if (x->null) {
        bin_null(s0);
        bin_null(sl);
        continue;
      }
      if (ty == WK_COL_REALS) bin_f4s(flat, x->v.s.p, x->v.s.n);
      else buf_put(flat, x->v.s.p, x->v.s.n);
      bin_i4(s0, (int32_t)(at + 1));
      bin_i4(sl, (int32_t)x->v.s.n);
      at += x->v.s.n;
    }
    return;
  }
  st__buf_t *b = &st->bufs[pp];
  static const uint32_t oids[] = {[WK_COL_TEXT] = ST__OID_TEXT,   [WK_COL_JSONB] = ST__OID_TEXT,
                                  [WK_COL_FLOAT4] = ST__OID_FLOAT4, [WK_COL_INT4] = ST__OID_INT4,
                                  [WK_COL_INT8] = ST__OID_INT8,   [WK_COL_BOOL] = ST__OID_BOOL,
                                  [WK_COL_TIME_MS] = ST__OID_INT8};
  bin_array(b, oids[ty], nr, nulls);
  for (size_t r = 0; r < nr; r++) {
    const st__cell_t *x = &tb->cells[r * nc + c];
    if (x->null) {
      bin_null(b);
      continue;
    }
    switch (ty) {
    case WK_COL_TEXT:
    case WK_COL_JSONB: bin_bytes(b, x->v.s.p, x->v.s.n); break;
    case WK_COL_FLOAT4: bin_f4s(b, &x->v.f, 1); break;
    case WK_COL_INT4: bin_i4(b, (int32_t)x->v.i); break;
    case WK_COL_INT8:
    case WK_COL_TIME_MS: bin_i8(b, x->v.i); break;
    case WK_COL_BOOL: bin_bool(b, x->v.b); break;
    default: break;
    }
  }
}

void wk_stmt_render(wk_stmt_t *st, const char **sql, int *n_params, const char *const **values,
                    const int **lengths, const int **formats) {
  if (st->cur_table != SIZE_MAX)
    st__die("render while a row of table %s is open", st->tables[st->cur_table].decl->name);
  for (size_t t = 0; t < st->n_tables; t++)
    for (size_t c = 0; c < st->tables[t].decl->n_cols; c++)
      st__render_column(st, &st->tables[t], c);

  const int o = st->outbox_param - 1;
  size_t no = st->n_outbox;
  for (int i = 0; i < 4; i++) bin_array(&st->bufs[o + i], ST__OID_TEXT, no, false);
  st->bufs[o + 4].len = 0;
  bin_array(&st->bufs[o + 5], ST__OID_INT4, no, false);
  bin_array(&st->bufs[o + 6], ST__OID_INT4, no, false);
  size_t at = 0;
  for (size_t i = 0; i < no; i++) {
    const st__outbox_t *x = &st->outbox[i];
    bin_bytes(&st->bufs[o], x->alert_id, strlen(x->alert_id));
    bin_bytes(&st->bufs[o + 1], x->domain, strlen(x->domain));
    bin_bytes(&st->bufs[o + 2], x->key, strlen(x->key));
    bin_bytes(&st->bufs[o + 3], x->topic, strlen(x->topic));
    buf_put(&st->bufs[o + 4], x->payload, x->payload_len);
    bin_i4(&st->bufs[o + 5], (int32_t)(at + 1));
    bin_i4(&st->bufs[o + 6], (int32_t)x->payload_len);
    at += x->payload_len;
  }

  st__buf_t *g = &st->bufs[st->group_param - 1];
  g->len = 0;
  buf_puts(g, st->group);

  const int k = st->offsets_param - 1;
  size_t nk = st->n_offsets;
  bin_array(&st->bufs[k], ST__OID_TEXT, nk, false);
  bin_array(&st->bufs[k + 1], ST__OID_INT4, nk, false);
  bin_array(&st->bufs[k + 2], ST__OID_INT8, nk, false);
  for (size_t i = 0; i < nk; i++) {
    bin_bytes(&st->bufs[k], st->offsets[i].topic, strlen(st->offsets[i].topic));
    bin_i4(&st->bufs[k + 1], st->offsets[i].partition);
    bin_i8(&st->bufs[k + 2], st->offsets[i].next_offset);
  }

  for (int i = 0; i < st->n_params; i++)
    if (st->bufs[i].p == NULL) buf_reserve(&st->bufs[i], 0); /* never a NULL value: "" */
  for (int part = WK_STMT_ALL; part <= WK_STMT_STATE; part++) {
    st__part_t *pt = &st->parts[part];
    for (int i = 0; i < pt->n_params; i++) {
      int gi = pt->global[i];
      pt->values[i] = st->bufs[gi].p;
      pt->lengths[i] = (int)st->bufs[gi].len;
      pt->formats[i] = gi != st->group_param - 1; /* the group is the one text parameter */
    }
  }
  wk_stmt_part(st, WK_STMT_ALL, sql, n_params, values, lengths, formats);
}

void wk_stmt_part(const wk_stmt_t *st, wk_stmt_part_t part, const char **sql, int *n_params,
                  const char *const **values, const int **lengths, const int **formats) {
  if (part < WK_STMT_ALL || part > WK_STMT_STATE) st__die("part %d", (int)part);
  const st__part_t *pt = &st->parts[part];
  *sql = pt->sql;
  *n_params = pt->n_params;
  *values = pt->values;
  *lengths = pt->lengths;
  *formats = pt->formats;
}

svc_err_t wk_stmt_parse_counts(const char *const cols[4], wk_stmt_counts_t *out) {
  long v[4];
  for (int i = 0; i < 4; i++) {
    char *end;
    if (cols[i] == NULL || cols[i][0] == '\0') return SVC_EDECODE;
    v[i] = strtol(cols[i], &end, 10);
    if (*end != '\0' || v[i] < 0) return SVC_EDECODE;
  }
  *out = (wk_stmt_counts_t){v[0], v[1], v[2], v[3]};
  return SVC_OK;
}
