#!/usr/bin/env python3
"""Usage: python3 bench/redis_lua_parts.py PORT
What the parts of a Redis script cost (docs/benchmarks.md, "Where a drain's CPU goes"): throwaway scripts given the
arguments of a completion of 18 tasks (181 values), 3,000 EVALSHA calls each, pipelined 100 at a time, on the Redis at
127.0.0.1:PORT; prints Redis's time (INFO commandstats) per call and per task. Uses keys mb:t:0 to mb:t:17, deleted
at the end."""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from redis_resp import Redis
port=int(sys.argv[1])
client=Redis(port); cmd=client.cmd; enc=client.encode
def stats(): return client.commandstats()
N=18
for i in range(N): cmd("HSET","mb:t:%d"%i,*sum([["f%d"%j,"v%08d"%j] for j in range(20)],[]))
scripts={
 "empty": "return 0",
 "argloop": "local n=tonumber(ARGV[2]) local c=0 for i=0,n-1 do local id=ARGV[3+i*10] c=c+#id end return c",
 "hmget12": "local n=tonumber(ARGV[2]) for i=0,n-1 do local cur=redis.call('HMGET','mb:t:'..i,'f1','f2','f3','f4','f5','f6','f7','f8','f9','f10','f11','f12') end return 0",
 "hmget2": "local n=tonumber(ARGV[2]) for i=0,n-1 do local cur=redis.call('HMGET','mb:t:'..i,'f1','f2') end return 0",
 "hset6": "local n=tonumber(ARGV[2]) for i=0,n-1 do redis.call('HSET','mb:t:'..i,'f1','a','f2','b','f3','c','f4','d','f5','e','f6','f') end return 0",
 "hset6tbl": "local n=tonumber(ARGV[2]) for i=0,n-1 do local set={'f1','a','f2','b','f3','c'} set[#set+1]='f4' set[#set+1]='d' set[#set+1]='f5' set[#set+1]='e' set[#set+1]='f6' set[#set+1]='f' redis.call('HSET','mb:t:'..i,unpack(set)) end return 0",
 "concat": "local n=tonumber(ARGV[2]) local B=ARGV[1] local x for i=0,n-1 do x=B..'q:'..'default'..':s:'..3 x=B..'finished' x='abc|2:1733430000000|3:1733430000123'..'|2:'..'1733430000000'..'|'..3 ..':'..'1733430000123' end return 0",
 "ret8": "local n=tonumber(ARGV[2]) local out={} for i=0,n-1 do for j=1,8 do out[#out+1]='x'..j end end return out",
}
shas={k:cmd("SCRIPT","LOAD",v).decode() for k,v in scripts.items()}
args=["conveyor:",N]+["%032x"%i if j==0 else "arg%d"%j for i in range(N) for j in range(10)]
R=3000
for name,sha in shas.items():
    before=stats().get("evalsha",(0,0))
    for r in range(R//100):
        client.send(b"".join(enc("EVALSHA",sha,0,*args) for _ in range(100)))
        for _ in range(100): client.read()
    after=stats()["evalsha"]
    c=after[0]-before[0]; u=after[1]-before[1]
    print(f"{name:10s} {u/c:8.1f} us/call {u/c/N:6.2f} us/task")
for i in range(N): cmd("DEL","mb:t:%d"%i)
