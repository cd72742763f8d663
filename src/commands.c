/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "backup.h"
#include "commands.h"
#include "files.h"
#include "manager.h"
#include "report.h"
#include "restore.h"

bool commands_peer_is_admin(const ControlPeer *peer, uid_t self, bool has_admin_group, gid_t admin_gid) {
        if (peer->uid == 0 || peer->uid == self)
                return true;
        if (!has_admin_group)
                return false;
        if (peer->gid == admin_gid)
                return true;
        for (int i = 0; i < peer->n_groups; i++)
                if (peer->groups[i] == admin_gid)
                        return true;
        return false;
}

bool commands_peer_privileged(Manager *m, const ControlPeer *peer) {
        const Config *cfg = manager_config(m);

        return commands_peer_is_admin(peer, geteuid(), cfg->admin_group != NULL, cfg->admin_gid);
}

/* "foreign_keys": what foreign_key_check found, null when it did not run. */
static void foreign_keys_object(Json *j, const DbFkCheck *fk) {
        json_key(j, "foreign_keys");
        if (!fk) {
                json_null(j);
                return;
        }
        json_object_begin(j);
        json_kv_uint(j, "duration_usec", fk->duration);
        json_kv_uint(j, "violations", fk->violations);
        json_key(j, "tables");
        json_array_begin(j);
        for (size_t i = 0; i < fk->n_tables; i++) {
                json_object_begin(j);
                json_kv_string(j, "table", fk->tables[i].table);
                json_kv_uint(j, "violations", fk->tables[i].count);
                json_object_end(j);
        }
        json_array_end(j);
        json_kv_uint(j, "more_tables", fk->more_tables);
        json_key(j, "first");
        json_array_begin(j);
        for (size_t i = 0; i < fk->n_first; i++) {
                const DbFkViolation *v = &fk->first[i];

                json_object_begin(j);
                json_kv_string(j, "table", v->table);
                if (v->has_rowid)
                        json_kv_int(j, "rowid", v->rowid);
                else
                        json_kv_null(j, "rowid");
                json_kv_string(j, "parent", v->parent);
                json_kv_int(j, "fkid", v->fkid);
                json_kv_string(j, "key", v->key);
                json_object_end(j);
        }
        json_array_end(j);
        json_kv_uint(j, "mismatches", fk->mismatches);
        if (fk->mismatches)
                json_kv_string(j, "mismatch", fk->mismatch);
        else
                json_kv_null(j, "mismatch");
        json_object_end(j);
}

static void outcome_reply(void *userdata, const MaintenanceOutcome *o) {
        static const char *const keys[_TASK_MAX] = {
                [TASK_CHECKPOINT] = "checkpoint",
                [TASK_VACUUM] = "vacuum",
                [TASK_ANALYZE] = "analyze",
                [TASK_QUICK_CHECK] = "check",
                [TASK_BACKUP] = "backup",
        };
        const TaskRun *run = o->run && o->run->valid ? o->run : NULL;
        ControlClient *cl = userdata;
        Json *j = control_reply_begin(cl, o->ok);

        if (!o->ok) {
                /* Cut short by the stop: its own outcome, not a failure. */
                json_kv_string(j, "code", run && run->result == TASK_RESULT_CANCELLED ? "cancelled" : "failed");
                json_kv_string(j, "error", o->error ? o->error : "failed");
        }
        json_key(j, keys[o->task]);
        json_object_begin(j);
        if (o->mode)
                json_kv_string(j, o->task == TASK_QUICK_CHECK ? "kind" : "mode", o->mode);
        json_kv_string(j, "result", run ? task_result_names[run->result] : o->ok ? "ok" : "failed");
        json_kv_uint(j, "duration_usec", run ? run->duration : 0);
        json_kv_uint(j, "lock_usec", run ? run->lock_usec : 0);
        json_kv_string(j, "summary", run ? run->summary : NULL);
        switch (o->task) {
        case TASK_CHECKPOINT:
                json_kv_bool(j, "busy", o->busy);
                /* -1 when SQLite did not say: another connection held the
                 * checkpoint lock, so nothing was read. */
                if (o->frames >= 0)
                        json_kv_int(j, "wal_frames", o->frames);
                else
                        json_kv_null(j, "wal_frames");
                if (o->checkpointed >= 0)
                        json_kv_int(j, "checkpointed", o->checkpointed);
                else
                        json_kv_null(j, "checkpointed");
                break;
        case TASK_VACUUM:
                json_kv_int(j, "pages_freed", o->pages);
                json_kv_int(j, "freelist_count", o->freelist_after);
                break;
        case TASK_ANALYZE:
                json_kv_int(j, "tables_analyzed", o->tables);
                break;
        case TASK_QUICK_CHECK:
                json_kv_int(j, "problems", o->problems);
                json_kv_string(j, "first", o->first);
                foreign_keys_object(j, o->foreign_keys);
                break;
        case TASK_BACKUP:
                json_kv_string(j, "path", o->backup_path);
                if (o->backup) {
                        json_kv_uint(j, "bytes", o->backup->bytes);
                        json_kv_int(j, "pages", o->backup->page_count);
                        json_kv_int(j, "page_size", o->backup->page_size);
                        json_kv_string(j, "sha256", o->backup->sha256);
                        json_kv_uint(j, "copy_usec", o->backup->copy_usec);
                        json_kv_uint(j, "snapshot_usec", o->backup->snapshot_usec);
                        json_kv_string(j, "check", o->backup->check);
                        json_kv_uint(j, "check_usec", o->backup->check_usec);
                }
                break;
        default:
                break;
        }
        json_object_end(j);
        control_reply_send(cl);
}

static void reload_reply(void *userdata, const ReloadOutcome *o) {
        ControlClient *cl = userdata;
        Json *j;

        switch (o->result) {
        case RELOAD_REJECTED:
                control_reply_error(cl, "failed",
                                    "configuration rejected, the running configuration stays in force: %s",
                                    o->error ? o->error : "?");
                return;
        case RELOAD_ABANDONED:
                control_reply_error(cl, "stopping", "reload abandoned: %s", o->error ? o->error : "sqlvigil is stopping");
                return;
        default:
                break;
        }
        j = control_reply_begin(cl, true);
        json_key(j, "reload");
        json_object_begin(j);
        json_kv_string(j, "result", "applied");
        if (o->control_socket)
                json_kv_string(j, "control_socket", o->control_socket);
        if (o->restart_needed)
                json_kv_string(j, "restart_needed", o->restart_needed);
        json_object_end(j);
        control_reply_send(cl);
}

static void backup_entry(Json *j, const BackupEntry *e) {
        json_object_begin(j);
        json_kv_string(j, "file", e->m.file);
        json_kv_double(j, "time", (double)e->m.time / USEC_PER_SEC);
        json_kv_string(j, "trigger", e->m.trigger);
        json_kv_uint(j, "bytes", e->m.bytes);
        json_kv_int(j, "pages", e->m.page_count);
        json_kv_int(j, "page_size", e->m.page_size);
        json_kv_string(j, "sqlite_version", e->m.sqlite_version);
        json_kv_string(j, "sha256", e->m.sha256);
        json_kv_string(j, "check", e->m.check);
        json_kv_string(j, "check_result", e->m.check_ok ? "ok" : "failed");
        json_kv_uint(j, "copy_usec", e->m.copy_usec);
        json_kv_uint(j, "check_usec", e->m.check_usec);
        json_kv_bool(j, "present", e->present);
        json_object_end(j);
}

static void backups_reply(void *userdata, int error, const BackupList *list) {
        ControlClient *cl = userdata;
        Json *j;

        if (error == -ENOENT) {
                control_reply_error(cl, "failed", "the backup directory does not exist");
                return;
        }
        if (error < 0) {
                control_reply_error(cl, "failed", "cannot read the backup directory: %s", strerror(-error));
                return;
        }
        j = control_reply_begin(cl, true);
        json_key(j, "backups");
        json_array_begin(j);
        for (size_t i = 0; i < list->n; i++)
                backup_entry(j, &list->entries[i]);
        json_array_end(j);
        control_reply_send(cl);
}

static void backups(Manager *m, ControlClient *cl) {
        Maintenance *mt = manager_maintenance(m);
        int r;

        if (!manager_config(m)->backup_directory) {
                control_reply_error(cl, "not-configured",
                                    "no [backup] directory is configured, so there are no backups to list: set one "
                                    "and reload");
                return;
        }
        if (!mt) {
                control_reply_error(cl, "stopping", "sqlvigil is stopping");
                return;
        }
        control_client_wait(cl);
        r = backuper_list(maintenance_backuper(mt), backups_reply, cl);
        if (r < 0)
                control_reply_error(cl, "failed", "cannot list the backups: %s", strerror(-r));
}

static void restore_reply(void *userdata, const RestoreOutcome *o) {
        ControlClient *cl = userdata;
        Json *j = control_reply_begin(cl, o->ok);

        if (!o->ok) {
                json_kv_string(j, "code", o->code ? o->code : "failed");
                json_kv_string(j, "error", o->error ? o->error : "failed");
        }
        json_key(j, "restore");
        json_object_begin(j);
        json_kv_string(j, "file", o->file);
        json_kv_bool(j, "changed", o->changed);
        json_kv_uint(j, "bytes", o->bytes);
        json_kv_int(j, "pages", o->pages);
        json_kv_int(j, "page_size", o->page_size);
        json_kv_string(j, "safety_backup", o->safety_backup);
        json_kv_uint(j, "duration_usec", o->duration);
        json_kv_uint(j, "lock_usec", o->lock_usec);
        json_kv_uint(j, "check_usec", o->check_usec);
        json_object_end(j);
        control_reply_send(cl);
}

static void read_only(Manager *m, ControlClient *cl, const Request *req) {
        Json *j = control_reply_begin(cl, true);
        Status s;

        switch (req->command) {
        case REQUEST_HEALTH:
                manager_status(m, &s);
                json_key(j, "health");
                report_health(&s, j);
                break;
        case REQUEST_CONFIG:
                json_kv_string(j, "source", manager_config(m)->source);
                json_key(j, "config");
                report_config(manager_config(m), j);
                break;
        default: /* stats and status carry the same */
                manager_status(m, &s);
                report_stats_members(&s, j);
                break;
        }
        control_reply_send(cl);
}

void commands_handle(Manager *m, ControlClient *cl, const Request *req) {
        const Config *cfg = manager_config(m);
        const ControlPeer *peer = control_client_peer(cl);
        int r;

        /* A descriptor belongs only to a restore. */
        if (req->command != REQUEST_RESTORE)
                for (size_t i = 0; i < 2; i++) {
                        int fd = control_client_take_fd(cl, i);

                        if (fd >= 0)
                                files_close(fd);
                }
        if (req->command == REQUEST_BACKUPS) {
                backups(m, cl);
                return;
        }
        if (!request_is_admin(req->command)) {
                read_only(m, cl, req);
                return;
        }
        if (manager_stopping(m)) {
                control_reply_error(cl, "stopping", "sqlvigil is stopping");
                return;
        }
        if (!commands_peer_is_admin(peer, geteuid(), cfg->admin_group != NULL, cfg->admin_gid)) {
                char who[256];

                if (cfg->admin_group)
                        bufprintf(who, sizeof(who), "root, uid %u or members of group %s", (unsigned)geteuid(),
                                  cfg->admin_group);
                else
                        bufprintf(who, sizeof(who), "root or uid %u", (unsigned)geteuid());
                control_reply_error(cl, "permission-denied", "permission denied: '%s' is for %s (you are uid %u)",
                                    request_names[req->command], who, (unsigned)peer->uid);
                return;
        }
        if (req->command == REQUEST_RESTORE) {
                int fd = control_client_take_fd(cl, 0), manifest_fd = control_client_take_fd(cl, 1);

                if (fd < 0) {
                        files_close(manifest_fd);
                        control_reply_error(cl, "bad-request",
                                            "restore needs the file's descriptor with the request (SCM_RIGHTS); "
                                            "use sqlvigilctl restore FILE");
                        return;
                }
                control_client_wait(cl);
                r = restorer_start(maintenance_restorer(manager_maintenance(m)), fd, manifest_fd, restore_reply, cl);
                if (r == RESTORE_E_RUNNING)
                        control_reply_error(cl, "busy", "a restore is already running");
                else if (r == -ESHUTDOWN)
                        control_reply_error(cl, "stopping", "sqlvigil is stopping");
                else if (r < 0)
                        control_reply_error(cl, "failed", "restore: %s", strerror(-r));
                return;
        }

        control_client_wait(cl);
        switch (req->command) {
        case REQUEST_CHECKPOINT:
                r = maintenance_request(manager_maintenance(m), TASK_CHECKPOINT, req->arg, outcome_reply, cl);
                break;
        case REQUEST_VACUUM:
                r = maintenance_request(manager_maintenance(m), TASK_VACUUM, req->arg, outcome_reply, cl);
                break;
        case REQUEST_ANALYZE:
                r = maintenance_request(manager_maintenance(m), TASK_ANALYZE, ANALYZE_MODE_ANALYZE, outcome_reply, cl);
                break;
        case REQUEST_OPTIMIZE:
                r = maintenance_request(manager_maintenance(m), TASK_ANALYZE, ANALYZE_MODE_OPTIMIZE, outcome_reply, cl);
                break;
        case REQUEST_CHECK:
                r = maintenance_request(manager_maintenance(m), TASK_QUICK_CHECK, req->arg, outcome_reply, cl);
                break;
        case REQUEST_BACKUP:
                if (!cfg->backup_directory) {
                        control_reply_error(cl, "not-configured",
                                            "no [backup] directory is configured: set one and reload");
                        return;
                }
                r = maintenance_request(manager_maintenance(m), TASK_BACKUP, 0, outcome_reply, cl);
                break;
        case REQUEST_RELOAD:
                r = manager_request_reload(m, reload_reply, cl);
                if (r == MANAGER_E_RELOADING)
                        r = MAINTENANCE_E_RUNNING;
                else if (r == MANAGER_E_STOPPING)
                        r = MAINTENANCE_E_STOPPING;
                break;
        default:
                r = -EINVAL;
        }
        if (r == 0)
                return; /* the reply is sent when the run ends (perhaps already) */
        if (r == MAINTENANCE_E_RUNNING)
                control_reply_error(cl, "busy",
                                    "%s is already running (scheduled, or asked for by someone else); ask again "
                                    "when it has ended ('sqlvigilctl status' shows its runs)",
                                    req->command == REQUEST_RELOAD     ? "a reload"
                                    : req->command == REQUEST_OPTIMIZE ? "analyze"
                                                                       : request_names[req->command]);
        else if (r == MAINTENANCE_E_STOPPING)
                control_reply_error(cl, "stopping", "sqlvigil is stopping");
        else
                control_reply_error(cl, "failed", "%s: %s", request_names[req->command], strerror(-r));
}

void commands_forget(Manager *m, ControlClient *cl) {
        if (manager_maintenance(m)) {
                maintenance_forget_reply(manager_maintenance(m), cl);
                backuper_forget(maintenance_backuper(manager_maintenance(m)), cl);
                restorer_forget(maintenance_restorer(manager_maintenance(m)), cl);
        }
        manager_forget_reload(m, cl);
}
