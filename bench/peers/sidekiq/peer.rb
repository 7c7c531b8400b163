# Sidekiq (Debian's ruby-sidekiq 6.4) as a peer of Conveyor's bench on Redis (docs/benchmarks.md#peers).
# The bench starts `ruby peer.rb worker` twice: 2 processes x 10 threads (-c 10), every other setting at its default.
# The line protocol it prints is described in bench/peers/README.md.
require "sidekiq"
require "sidekiq/api"
require "connection_pool"
require "redis"

$stdout.sync = true
# redis-rb 4.8 warns on every push and fetch of Sidekiq 6.4 about its 5.0 API: noise on stderr, and a cost.
Redis.silence_deprecations = true

def env(name)
  ENV.fetch(name) { abort "#{name} is not set (the bench sets it)" }
end

def now_ns = Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond)

QUEUE = env("PEER_NAME")
Sidekiq.configure_client { |c| c.redis = { url: env("PEER_URL"), size: 2 } }
Sidekiq.configure_server do |c|
  c.redis = { url: env("PEER_URL") }
  c.logger.level = Logger::WARN
  c.on(:startup) { puts "ready" }
end
Sidekiq.logger.level = Logger::WARN

# The common instrument, on its own connections (one per thread at most).
INSTRUMENT = ConnectionPool.new(size: 10) { Redis.new(url: env("PEER_REDIS")) }

class Noop
  include Sidekiq::Worker
  sidekiq_options queue: QUEUE

  def perform
    INSTRUMENT.with { |r| r.incr(ENV["PEER_COUNTER"]) }
  end
end

class Probe
  include Sidekiq::Worker
  sidekiq_options queue: QUEUE

  def perform(sent, measured)
    started = now_ns
    INSTRUMENT.with { |r| r.rpush(ENV["PEER_SAMPLES"], "#{measured ? 1 : 0} #{started - Integer(sent)}") }
  end
end

def wait_until(deadline)
  loop do
    left = (deadline - now_ns) / 1e9
    return if left <= 0
    sleep(left > 0.002 ? left - 0.001 : 0)
  end
end

if $PROGRAM_NAME == __FILE__
  command, *argv = ARGV
  case command
  when "enqueue"
    n = Integer(argv[0])
    limit = (Float(argv[1]) * 1e9).to_i
    Noop.perform_async # connects: not timed
    puts "warm 1"
    start = now_ns
    count = 0
    while count < n && now_ns - start < limit
      Noop.perform_async
      count += 1
    end
    puts "enqueued #{count} #{(now_ns - start) / 1e9}"
    puts "stored #{Sidekiq::Queue.new(QUEUE).size}"
  when "fill"
    n = Integer(argv[0])
    done = 0
    while done < n
      size = [1000, n - done].min
      Sidekiq::Client.push_bulk("class" => Noop, "args" => Array.new(size) { [] }, "queue" => QUEUE)
      done += size
    end
    puts "filled #{Sidekiq::Queue.new(QUEUE).size}"
  when "latency"
    rate = Float(argv[0])
    [[Integer(argv[1]), false], [Integer(argv[2]), true]].each do |count, measured|
      start = now_ns
      count.times do |i|
        wait_until(start + (i * 1e9 / rate).to_i)
        Probe.perform_async(now_ns.to_s, measured)
      end
    end
    puts "sent #{Integer(argv[1]) + Integer(argv[2])}"
  when "worker"
    exec("sidekiq", "-r", File.expand_path(__FILE__), "-c", "10", "-q", QUEUE, "-e", "production")
  else
    warn "usage: ruby peer.rb enqueue|fill|latency|worker ..."
    exit 2
  end
end
