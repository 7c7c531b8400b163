#!/usr/bin/env python3
"""Usage: python3 bench/redis_script_cost.py PORT [SCRIPTDIR] [TASKS] [BATCH]
Redis's own time per task (INFO commandstats, EVALSHA) in Conveyor's fetch and completion scripts, without a worker:
enqueues TASKS (40,000) under a scratch key prefix on the Redis at 127.0.0.1:PORT, then fetches BATCH (19, what a
worker's batches hold in a drain) at a time and completes each batch as succeeded, and deletes the keys. SCRIPTDIR
(default src/Conveyor.Redis/Scripts) holds prelude.lua, workflow.lua, enqueue.lua, fetch.lua and complete.lua, composed
as RedisScripts composes them: copy it, change a script, and alternate the two folders to compare. Nothing else may use
that Redis meanwhile."""
import sys, os, time, uuid
port=int(sys.argv[1])
d=sys.argv[2] if len(sys.argv)>2 and sys.argv[2] else os.path.join(os.path.dirname(os.path.abspath(__file__)),"..","src","Conveyor.Redis","Scripts")
N=int(sys.argv[3]) if len(sys.argv)>3 else 40000; BATCH=int(sys.argv[4]) if len(sys.argv)>4 else 19
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from redis_resp import Redis
client=Redis(port); cmd=client.cmd
def script(*files):
    text=open(os.path.join(d,"prelude.lua")).read()+"".join(open(os.path.join(d,x)).read() for x in files)
    return text[:-1] if text.endswith("\n") else text
def evalsha_usec(): return client.commandstats().get("evalsha", (0, 0))[1]
enq=cmd("SCRIPT","LOAD",script("enqueue.lua")).decode()
fet=cmd("SCRIPT","LOAD",script("fetch.lua")).decode()
com=cmd("SCRIPT","LOAD",script("workflow.lua","complete.lua")).decode()
B="{lb%d}:"%os.getpid()
now=int(time.time()*1000)
msg="v"+'{"id":"00000000-0000-0000-0000-000000000000","task":"bench.incr","queue":"default","args":{"key":"bench:counter"},"priority":0,"maxAttempts":5,"createdAt":"2026-12-05T23:00:00.000+00:00"}'
ids=[]
for c in range(0,N,500):
    args=[B,now,500]
    for i in range(500):
        tid=str(uuid.uuid4()); ids.append(tid)
        args+= [tid,"bench.incr","default",0,5,"","","",msg]
    cmd("EVALSHA",enq,0,*args)
fetch_us=0; complete_us=0; done=0; token=12345
while True:
    u0=evalsha_usec()
    got=[]
    for _ in range(100):
        r=cmd("EVALSHA",fet,0,B,now,now+30000,token,"w1",BATCH,1,"default")
        if not r: break
        got.append(r)
    u1=evalsha_usec(); fetch_us+=u1-u0
    if not got: break
    for r in got:
        n=len(r)//8
        args=[B,n]
        for i in range(n):
            args+=[r[i*8].decode(),token,3,"","","","",now+5,0,""]
        changed=cmd("EVALSHA",com,0,*args)
        # The completion script answers the completions not settled as asked (none here); before 2026-12-06 it
        # answered how many it settled: either form, so that script folders of both ages compare.
        assert changed==[] or changed==n,(changed,n)
        done+=n
    complete_us+=evalsha_usec()-u1
assert done==N,(done,N)
print(f"{os.path.normpath(d)}: {N} tasks, batch {BATCH}: fetch {fetch_us/N:.2f} us/task, complete {complete_us/N:.2f} us/task, total {(fetch_us+complete_us)/N:.2f}")
# clean up
cur="0"
while True:
    cur,keys=cmd("SCAN",cur,"MATCH",B+"*","COUNT",1000); cur=cur.decode()
    if keys: cmd("UNLINK",*keys)
    if cur=="0": break
