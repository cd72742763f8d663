/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * ANALYZE and PRAGMA optimize, one table at a time so that each ANALYZE
 * holds the write lock only for its table's bounded sample (db_analyze()
 * says how the stale tables are chosen).
 */

#include "config.h"
#include "task.h"

typedef struct Maintenance Maintenance;

/* A run in mode; ends with maintenance_end(). */
void analyze_run(Maintenance *mt, TaskTrigger trigger, AnalyzeMode mode);
