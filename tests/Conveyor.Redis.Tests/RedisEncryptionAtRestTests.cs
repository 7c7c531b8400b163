using System.Text;
using Conveyor.Backends;
using Conveyor.Conformance;
using StackExchange.Redis;

namespace Conveyor.Redis.Tests;

/// <summary>Encryption at rest on Redis: every value of every key under the test's prefix, read by type (strings,
/// hashes, lists, sets, sorted sets, streams).</summary>
public sealed class RedisEncryptionAtRestTests : EncryptionAtRestConformance<RedisTestBackend>
{
    protected override async Task<string> ReadRawAsync(IConveyorBackend backend, CancellationToken cancellationToken)
    {
        var connection = await RedisTestBackend.ConnectionAsync();
        var db = connection.GetDatabase();
        var keyBase = ((RedisBackend)backend).KeyBase;
        var pattern = string.Concat(keyBase.Select(c => c is '*' or '?' or '[' or ']' or '\\' ? "\\" + c : c.ToString())) + "*";
        var text = new StringBuilder();
        var keys = 0;
        foreach (var server in connection.GetServers().Where(s => !s.IsReplica))
        {
            await foreach (var key in server.KeysAsync(db.Database, pattern, 1000).WithCancellation(cancellationToken))
            {
                keys++;
                text.Append(key).Append('\t');
                switch (await db.KeyTypeAsync(key))
                {
                    case RedisType.String:
                        text.Append(await db.StringGetAsync(key));
                        break;
                    case RedisType.Hash:
                        foreach (var entry in await db.HashGetAllAsync(key))
                        {
                            text.Append(entry.Name).Append('=').Append(entry.Value).Append('\t');
                        }
                        break;
                    case RedisType.List:
                        text.AppendJoin('\t', await db.ListRangeAsync(key));
                        break;
                    case RedisType.Set:
                        text.AppendJoin('\t', await db.SetMembersAsync(key));
                        break;
                    case RedisType.SortedSet:
                        text.AppendJoin('\t', (await db.SortedSetRangeByRankWithScoresAsync(key)).Select(e => e.Element));
                        break;
                    case RedisType.Stream:
                        foreach (var entry in await db.StreamRangeAsync(key))
                        {
                            text.AppendJoin('\t', entry.Values.Select(v => $"{v.Name}={v.Value}")).Append('\t');
                        }
                        break;
                    case var other:
                        Assert.Fail($"key {key} is a {other}, which this reader does not read");
                        break;
                }
                text.Append('\n');
            }
        }
        Assert.True(keys > 0, $"no key under {keyBase}");
        return text.ToString();
    }
}
