-- Periodic schedules (IScheduleStore): one versioned JSON document per schedule, changed by compare-and-set on version.
CREATE TABLE schedules (name TEXT PRIMARY KEY, version INTEGER NOT NULL, document TEXT NOT NULL) WITHOUT ROWID;
