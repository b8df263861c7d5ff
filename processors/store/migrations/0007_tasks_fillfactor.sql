-- Every emitted window rewrites its task's row. With full pages (the default fillfactor of
-- 100) each new row version goes to another page, and all four indexes of `tasks` get a new
-- entry; with room left on the page, PostgreSQL updates in place (a HOT update) and leaves
-- the indexes alone, as long as no indexed column (task_id, project, box_ids) changed.
-- Applies to pages written from now on; existing ones fill up as they are rewritten.
ALTER TABLE tasks SET (fillfactor = 70);
