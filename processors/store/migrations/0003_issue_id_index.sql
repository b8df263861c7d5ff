-- Finds the sites that know a Jira issue id (task ids are jira:<site>:<issue id>), for events
-- that name an issue by id only (issue links) and no site.
CREATE INDEX IF NOT EXISTS tasks_jira_issue_id ON tasks (split_part(task_id, ':', 3))
    WHERE source = 'jira';
