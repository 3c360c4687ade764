#include <sqlite3.h>

/* sqlite3_db_config is variadic, which Swift cannot call: one fixed-argument wrapper per use.
   Closing a connection whose database file was renamed away (the catalog was swapped by a
   repair) must not checkpoint: SQLite would then delete the WAL by its path name, which now
   belongs to the new catalog. */
static inline int tenpak_sqlite_no_checkpoint_on_close(sqlite3 *db) {
    return sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)0);
}
