"""`make chaos`: the reliability battery (issue 12 §3).

It runs boxsync on a stack of its own (BOXSYNC_LOCAL_DIR=.local/chaos, Kafka on 19092/19093,
embedded PostgreSQL under that directory), because it stops the broker and the database; the
shared development stack (.local, 9092) is never touched. Each part has its own topic prefix
and its own `boxsync worker` process, and ends as rows of one table (what was done, what was
expected, what was seen, PASS or FAIL):

- kill: a load with an oracle of every task's final fields, through a worker that is killed
  with SIGKILL (the main process and single stage processes), a broker restart and a stopped
  PostgreSQL (chaos.kill);
- fuzz: bodies from hypothesis strategies of the upstream formats and mutations of real
  bodies (chaos.fuzz);
- gateway: forged signatures, slowloris and oversize bodies (chaos.gateway);
- soak: a steady rate for a long time: memory, emit delay, lag (chaos.soak).
"""
