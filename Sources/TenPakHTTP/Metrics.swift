// Prometheus metrics of `tpstore serve` (GET /metrics, text exposition format 0.0.4).
//
// Labels are the route kind (resolve, api, lfs, xet, upload, transfer, metrics, web, other) and the status class:
// never a repository, path or token, so the page leaks nothing a caller could not otherwise see.
import Foundation
import Prometheus
import TenPakReader

final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let readDuration: DurationHistogram
    private let cacheHits: Gauge
    private let decodes: Gauge
    private let prefetches: Gauge
    private let uploadsInProgress: Gauge
    static let routes = ["resolve", "api", "lfs", "xet", "upload", "transfer", "metrics", "web", "other"]
    static let statusClasses = ["2xx", "3xx", "4xx", "5xx"]
    private let requestCounters: [String: Counter]
    private let bytesOut: [String: Counter]
    private let bytesIn: [String: Counter]
    private let latencies: [String: DurationHistogram]

    init() {
        let buckets: [Duration] = [.milliseconds(1), .milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(250),
                                   .milliseconds(1000), .seconds(5), .seconds(30), .seconds(120)]
        var counters: [String: Counter] = [:]
        var outs: [String: Counter] = [:]
        var ins: [String: Counter] = [:]
        var latencies: [String: DurationHistogram] = [:]
        for route in ServerMetrics.routes {
            for status in ServerMetrics.statusClasses {
                counters[route + status] = registry.makeCounter(name: "tpstore_http_requests_total", labels: [("route", route), ("status", status)],
                                                                help: "HTTP requests answered, by route and status class")
            }
            outs[route] = registry.makeCounter(name: "tpstore_http_response_bytes_total", labels: [("route", route)], help: "Body bytes sent")
            ins[route] = registry.makeCounter(name: "tpstore_http_request_bytes_total", labels: [("route", route)], help: "Body bytes received (uploads)")
            latencies[route] = registry.makeDurationHistogram(name: "tpstore_http_request_duration_seconds", labels: [("route", route)], buckets: buckets,
                                                              help: "Time from the request head to the end of the response")
        }
        requestCounters = counters
        bytesOut = outs
        bytesIn = ins
        self.latencies = latencies
        readDuration = registry.makeDurationHistogram(name: "tpstore_read_seconds", buckets: buckets,
                                                      help: "Time spent reading and decoding one piece (up to 4 MiB) of a stored file")
        cacheHits = registry.makeGauge(name: "tpstore_reader_cache_hits", help: "Decoded-chunk cache hits since start")
        decodes = registry.makeGauge(name: "tpstore_reader_decodes", help: "Chunks decoded from packs since start")
        prefetches = registry.makeGauge(name: "tpstore_reader_prefetches", help: "Background decodes started since start")
        uploadsInProgress = registry.makeGauge(name: "tpstore_uploads_in_progress", help: "Upload bodies being received or stored")
    }

    static func statusClass(_ code: Int) -> String {
        switch code {
        case 200 ..< 300: return "2xx"
        case 300 ..< 400: return "3xx"
        case 400 ..< 500: return "4xx"
        default: return "5xx"
        }
    }

    func record(route: String, status: Int, bytesSent: Int, bytesReceived: Int, duration: Duration) {
        let route = ServerMetrics.routes.contains(route) ? route : "other"
        requestCounters[route + ServerMetrics.statusClass(status)]?.increment()
        if bytesSent > 0 { bytesOut[route]?.increment(by: Int64(bytesSent)) }
        if bytesReceived > 0 { bytesIn[route]?.increment(by: Int64(bytesReceived)) }
        latencies[route]?.record(duration)
    }

    func recordRead(_ duration: Duration) { readDuration.record(duration) }

    /// The exposition, with the reader's counters and the upload slots read now.
    func exposition(reader: StoreReader, uploadsInUse: Int) -> [UInt8] {
        let stats = reader.statistics
        cacheHits.set(Int64(stats.cacheHits))
        decodes.set(Int64(stats.decodes))
        prefetches.set(Int64(stats.prefetches))
        uploadsInProgress.set(Int64(uploadsInUse))
        return registry.emitToBuffer()
    }
}
