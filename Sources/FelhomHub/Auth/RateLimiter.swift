import FelhomCore
import Foundation
import Synchronization

/// Per-key token buckets: a key (one box, one guest) cannot flood the hub.
///
/// Each key has one bucket per kind of request; a bucket holds at most `burst` tokens and refills
/// at `perMinute`. An empty bucket answers 429 with `Retry-After`. The operator key is never
/// limited. Buckets live in this process: with several replicas behind a balancer a key gets at
/// most replicas × the limit, which still bounds it.
public final class RateLimiter: Sendable {
    /// One limit. `perMinute == 0` turns it off (load tests raise or disable limits through config).
    public struct Limit: Sendable, Equatable {
        public var perMinute: Double
        public var burst: Double
        public init(perMinute: Double, burst: Double) {
            self.perMinute = perMinute
            self.burst = burst
        }
        public static let off = Limit(perMinute: 0, burst: 0)
    }

    /// What is being limited.
    public enum Kind: String, Sendable {
        case hostReport = "host_report"
        case event
        case guestReport = "guest_report"
    }

    private struct Bucket {
        var tokens: Double
        var at: Date
    }

    let limits: [Kind: Limit]
    let clock: WallClock
    private let buckets = Mutex<[String: Bucket]>([:])

    public init(limits: [Kind: Limit], clock: WallClock) {
        self.limits = limits
        self.clock = clock
    }

    /// Takes one token for `principal` or throws 429 naming when to retry.
    func take(_ kind: Kind, for principal: Principal) throws {
        guard let limit = limits[kind], limit.perMinute > 0 else { return }
        let subject: String
        switch principal {
        case .operator: return
        case .customer(let c): subject = "c:" + c
        case .host(let h, _): subject = "h:" + h
        case .guest(let g, _, _): subject = "g:" + g
        }
        let now = clock.now()
        let rate = limit.perMinute / 60
        let burst = max(1, limit.burst)
        let wait: Double? = buckets.withLock { b in
            if b.count > 200_000 { b.removeAll() }  // bounded memory; full buckets are the default anyway
            let key = kind.rawValue + "|" + subject
            var bucket = b[key] ?? Bucket(tokens: burst, at: now)
            bucket.tokens = min(burst, bucket.tokens + max(0, now.timeIntervalSince(bucket.at)) * rate)
            bucket.at = now
            defer { b[key] = bucket }
            guard bucket.tokens >= 1 else { return (1 - bucket.tokens) / rate }
            bucket.tokens -= 1
            return nil
        }
        if let wait {
            throw HubError.tooManyRequests(retryAfter: Int(wait.rounded(.up)), what: kind.rawValue.replacingOccurrences(of: "_", with: " ") + "s")
        }
    }
}
