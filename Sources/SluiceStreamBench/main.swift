#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
import NIOCore
import NIOHTTP1
import NIOPosix

// Streamed-answer load: many long SSE streams at a steady pace, each chunk timed from the upstream's send stamp to
// the client's read. The client prints one JSON object on stdout and failures on stderr.

let usageText = """
    usage: sluice-stream-bench upstream PORT [--chunks 200] [--interval-ms 50]
           sluice-stream-bench client URL --streams N [--key KEY] [--body JSON] [--ramp-ms 2000]
                                      [--gateway-pid PID] [--chunks 200] [--interval-ms 50]
    """

/// Swift 6 rejects the C `stderr` global as shared mutable state, so this writes to the descriptor.
func eprint(_ message: String) {
    var line = "sluice-stream-bench: " + message + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

func usage(_ message: String) -> Never {
    eprint(message + "\n" + usageText)
    exit(2)
}

func parseOptions(_ args: ArraySlice<String>, allowed: Set<String>) -> [String: String] {
    var options: [String: String] = [:]
    var rest = args
    while let name = rest.popFirst() {
        guard allowed.contains(name) else { usage("unknown argument \(name)") }
        guard let value = rest.popFirst() else { usage("\(name) needs a value") }
        options[name] = value
    }
    return options
}

func integer(_ options: [String: String], _ name: String, default fallback: Int?, min: Int = 1) -> Int {
    guard let text = options[name] else {
        if let fallback { return fallback }
        usage("\(name) is required")
    }
    guard let value = Int(text), value >= min else { usage("\(name) must be an integer >= \(min)") }
    return value
}

// MARK: - /proc

func readFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while case let n = chunk.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }), n > 0 {
        bytes.append(contentsOf: chunk[..<n])
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// utime + stime, fields 14 and 15, counted after the last ')' because the command name may hold spaces.
func cpuTicks(pid: Int) -> UInt64? {
    guard let stat = readFile("/proc/\(pid)/stat"), let paren = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: paren)...].split(separator: " ")
    guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
    return user + system
}

func rssKiB(pid: Int) -> Int? {
    guard let status = readFile("/proc/\(pid)/status") else { return nil }
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
    return line.flatMap { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first }.flatMap { Int($0) }
}

// MARK: - Modes

func runUpstream(_ args: ArraySlice<String>) throws {
    guard let port = args.first.flatMap({ Int($0) }), (1...65535).contains(port) else { usage("upstream needs a PORT") }
    let options = parseOptions(args.dropFirst(), allowed: ["--chunks", "--interval-ms"])
    let chunks = integer(options, "--chunks", default: 200)
    let interval = integer(options, "--interval-ms", default: 50, min: 0)
    // One thread: the upstream is a fixture, and the gateway and the client need the other cycles.
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let server = try ServerBootstrap(group: group)
        .serverChannelOption(ChannelOptions.backlog, value: 4096)
        .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                try channel.pipeline.syncOperations.addHandler(UpstreamHandler(chunks: chunks, intervalMilliseconds: interval))
            }
        }
        .bind(host: "127.0.0.1", port: port).wait()
    eprint("upstream on 127.0.0.1:\(port): \(chunks) chunks every \(interval) ms")
    try server.closeFuture.wait()
}

func runClient(_ args: ArraySlice<String>) throws {
    guard let url = args.first, url.hasPrefix("http://") else { usage("client needs an http:// URL") }
    let options = parseOptions(
        args.dropFirst(),
        allowed: ["--streams", "--key", "--body", "--ramp-ms", "--gateway-pid", "--chunks", "--interval-ms"]
    )
    let streams = integer(options, "--streams", default: nil)
    let chunks = integer(options, "--chunks", default: 200)
    let interval = integer(options, "--interval-ms", default: 50, min: 0)
    let ramp = integer(options, "--ramp-ms", default: 2000, min: 0)
    let pid = options["--gateway-pid"] == nil ? nil : integer(options, "--gateway-pid", default: nil)

    let rest = url.dropFirst("http://".count)
    let hostPort = rest.prefix { $0 != "/" }
    let path = hostPort.endIndex == rest.endIndex ? "/" : String(rest[hostPort.endIndex...])
    let colon = hostPort.lastIndex(of: ":")
    let host = String(colon.map { hostPort[..<$0] } ?? hostPort)
    guard let port = colon.map({ Int(hostPort[hostPort.index(after: $0)...]) }) ?? 80, (1...65535).contains(port), !host.isEmpty
    else { usage("bad URL \(url)") }
    // Resolved once here, so that a thousand connects do not each run a blocking lookup on the measuring loop; and
    // localhost as IPv4, because getaddrinfo may put ::1 first while servers here listen on 127.0.0.1.
    let address: SocketAddress
    do { address = try SocketAddress.makeAddressResolvingHost(host == "localhost" ? "127.0.0.1" : host, port: port) } catch {
        usage("cannot resolve \(host): \(error)")
    }
    let request = RequestTemplate(
        hostHeader: String(hostPort), path: path,
        body: options["--body"] ?? #"{"model":"llama3.2","stream":true,"messages":[{"role":"user","content":"stream bench"}]}"#,
        key: options["--key"]
    )

    var baseline = (ticks: UInt64(0), rss: 0)
    if let pid {
        guard let ticks = cpuTicks(pid: pid), let rss = rssKiB(pid: pid) else { usage("cannot read /proc/\(pid)") }
        baseline = (ticks, rss)
    }
    var peak = baseline.rss

    // One client thread leaves the other core to the gateway; the client's own work per chunk is small.
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let loop = group.next()
    let run = try loop.submit { NIOLoopBound(BenchRun(streams: streams, chunks: chunks), eventLoop: loop) }.wait()
    // Covers the ramp, a stream's nominal length and generous slack, so that a stalled peer cannot hang the run.
    let timeout = TimeAmount.milliseconds(Int64(ramp + chunks * interval)) + .seconds(30)
    loop.execute {
        // Built here because a ClientBootstrap is not Sendable.
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(StreamHandler(run: run.value, request: request))
                }
            }
        run.value.start(loop: loop, bootstrap: bootstrap, address: address, rampNanos: Int64(ramp) * 1_000_000, timeout: timeout)
    }

    var polls = 0
    while !allStreamsDone.load(ordering: .acquiring) {
        // Polls every 10 ms so the CPU window closes soon after the last stream, but reads /proc every 100 ms.
        if let pid, polls % 10 == 0, let rss = rssKiB(pid: pid) { peak = max(peak, rss) }
        polls += 1
        usleep(10_000)
    }
    let endTicks = pid.flatMap { cpuTicks(pid: $0) }
    let summary = try loop.submit { run.value.summary() }.wait()
    try? group.syncShutdownGracefully()

    var json = summary.json
    if pid != nil {
        let cpuMicros = endTicks.map { Double($0 &- baseline.ticks) / Double(sysconf(Int32(_SC_CLK_TCK))) * 1e6 } ?? .nan
        json += #","gateway":{"cpu_us_per_chunk":\#(fixed(cpuMicros / Double(summary.chunks), scale: 100)),"#
            + #""rss_baseline_kib":\#(baseline.rss),"rss_peak_kib":\#(peak),"#
            + #""rss_per_stream_kib":\#(fixed(Double(peak - baseline.rss) / Double(streams)))}"#
    }
    print(json + "}")
    for failure in summary.failures { eprint("failed: \(failure)") }
}

let arguments = CommandLine.arguments.dropFirst()
do {
    switch arguments.first {
    case "upstream": try runUpstream(arguments.dropFirst())
    case "client": try runClient(arguments.dropFirst())
    default: usage("expected upstream or client")
    }
} catch {
    eprint("\(error)")
    exit(1)
}
