using System.Text;
using Conveyor.Backends;
using Conveyor.Conformance;
using Conveyor.Sqlite;
using Conveyor.TestBackends;
using Microsoft.Data.Sqlite;
using RabbitMQ.Client;

namespace Conveyor.RabbitMQ.Tests;

/// <summary>Encryption at rest on RabbitMQ with its SQL store (SQLite): every message waiting in the test's broker queues
/// (taken without acknowledgement, then handed back), and every column of every row of the store.</summary>
public sealed class RabbitMqEncryptionAtRestTests : EncryptionAtRestConformance<RabbitMqTestBackend>
{
    protected override async Task<string> ReadRawAsync(IConveyorBackend backend, CancellationToken cancellationToken)
    {
        var rabbit = (RabbitMqBackend)backend;
        var text = new StringBuilder();
        var factory = new ConnectionFactory { Uri = new Uri(TestServers.Amqp) };
        await using (var connection = await factory.CreateConnectionAsync(cancellationToken))
        {
            await using var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken);
            var queue = rabbit.BrokerQueueName(QueueNames.Default);
            // Unacknowledged, so that closing the channel puts every message back where it was.
            while (await channel.BasicGetAsync(queue, autoAck: false, cancellationToken) is { } message)
            {
                text.Append("message\t").Append(message.BasicProperties.MessageId).Append('\t')
                    .Append(Encoding.UTF8.GetString(message.Body.Span)).Append('\n');
                if (message.BasicProperties.Headers is { } headers)
                {
                    foreach (var (name, value) in headers)
                    {
                        text.Append(name).Append('=').Append(value is byte[] bytes ? Encoding.UTF8.GetString(bytes) : value).Append('\t');
                    }
                }
            }
            await channel.CloseAsync(cancellationToken);
        }
        text.Append(await ReadAllRowsAsync(((SqliteBackend)rabbit.StoreBackend).DatabasePath, cancellationToken));
        return text.ToString();
    }

    [Fact]
    public async Task The_reader_sees_the_messages_waiting_in_the_broker()
    {
        var message = new TaskMessage { Id = Guid.CreateVersion7(), Task = "secret.echo", Args = "{}", CreatedAt = DateTimeOffset.UtcNow };
        await Backend.Queue.EnqueueAsync([message], Timeout);

        var raw = await ReadRawAsync(Backend, Timeout);

        Assert.Contains("message\t" + message.Id.ToString("D"), raw, StringComparison.Ordinal);
        // Handed back: a second read sees it again.
        Assert.Contains("message\t" + message.Id.ToString("D"), await ReadRawAsync(Backend, Timeout), StringComparison.Ordinal);
    }

    /// <summary>Every value of every table in the store's file, as text (blobs as UTF-8).</summary>
    private static async Task<string> ReadAllRowsAsync(string path, CancellationToken cancellationToken)
    {
        await using var connection = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
        await connection.OpenAsync(cancellationToken);
        var tables = new List<string>();
        await using (var list = connection.CreateCommand())
        {
            list.CommandText = "SELECT name FROM sqlite_master WHERE type = 'table'";
            await using var reader = await list.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                tables.Add(reader.GetString(0));
            }
        }
        Assert.Contains("tasks", tables);
        var text = new StringBuilder();
        foreach (var table in tables)
        {
            await using var select = connection.CreateCommand();
            select.CommandText = $"SELECT * FROM \"{table.Replace("\"", "\"\"", StringComparison.Ordinal)}\"";
            await using var reader = await select.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                for (var i = 0; i < reader.FieldCount; i++)
                {
                    text.Append(reader.GetValue(i) switch
                    {
                        byte[] bytes => Encoding.UTF8.GetString(bytes),
                        var value => Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture),
                    }).Append('\t');
                }
                text.Append('\n');
            }
        }
        return text.ToString();
    }
}
