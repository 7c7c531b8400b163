-- Periodic schedules (IScheduleStore): one versioned JSON document per schedule, changed by compare-and-set on version.
-- COLLATE "C": ordinal order for the listing, whatever the database's collation.
CREATE TABLE schedules (name text COLLATE "C" PRIMARY KEY, version bigint NOT NULL, document text NOT NULL);
