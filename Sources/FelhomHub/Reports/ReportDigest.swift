import Crypto
import Foundation

/// A digest of what a box *is*, without what it merely *measures*: SHA-256 of a host report's
/// encoding without its top-level sampled members (`reported_at`, `host` — CPU, memory, disk,
/// uptime, load — and `hardware` sensors). Two reports with the same digest differ only in samples,
/// so the history keeps one of them per heartbeat; any change of a guest, a backup, a route, a
/// version or the applied generation gives a new digest.
///
/// It reads the bytes the hub stores (``FelhomCore/HostReport/encoded()``: sorted keys, so equal
/// reports give equal bytes) with a byte scanner instead of encoding the report a second time
/// (a JSON encode was 7 % of the hub's time under load). Bytes it cannot follow are hashed whole:
/// the worst case is one more history row, never a lost one.
enum ReportDigest {
    /// Top-level members that are samples, not state.
    static let sampled: Set<[UInt8]> = [Array("reported_at".utf8), Array("host".utf8), Array("hardware".utf8)]

    /// Base64 of SHA-256 over `encoded` without the sampled top-level members.
    static func state(ofEncoded encoded: Data) -> String {
        let bytes = [UInt8](encoded)
        var hasher = SHA256()
        if let ranges = sampledRanges(bytes) {
            var keep = 0
            for range in ranges {
                hasher.update(data: bytes[keep..<range.lowerBound])
                keep = range.upperBound
            }
            hasher.update(data: bytes[keep...])
        } else {
            hasher.update(data: bytes)
        }
        return Data(hasher.finalize()).base64EncodedString()
    }

    /// The byte ranges of the sampled members (key through value) of the top-level object, in
    /// order; `nil` when the bytes are not one JSON object this scanner can follow.
    static func sampledRanges(_ b: [UInt8]) -> [Range<Int>]? {
        var i = 0
        func skipSpace() { while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 } }
        /// Past the string that starts at `i` (a quote); false if it does not end.
        func skipString() -> Bool {
            i += 1
            while i < b.count {
                if b[i] == 0x5C {  // backslash: the next byte is escaped
                    i += 2
                    continue
                }
                if b[i] == 0x22 {
                    i += 1
                    return true
                }
                i += 1
            }
            return false
        }
        /// Past the value that starts at `i`.
        func skipValue() -> Bool {
            guard i < b.count else { return false }
            switch b[i] {
            case 0x22: return skipString()
            case 0x7B, 0x5B:
                var depth = 0
                while i < b.count {
                    switch b[i] {
                    case 0x22: if !skipString() { return false } else { continue }
                    case 0x7B, 0x5B: depth += 1
                    case 0x7D, 0x5D:
                        depth -= 1
                        if depth == 0 {
                            i += 1
                            return true
                        }
                    default: break
                    }
                    i += 1
                }
                return false
            default:
                while i < b.count, b[i] != 0x2C, b[i] != 0x7D, b[i] != 0x5D { i += 1 }
                return i < b.count
            }
        }
        skipSpace()
        guard i < b.count, b[i] == 0x7B else { return nil }
        i += 1
        var ranges: [Range<Int>] = []
        while true {
            skipSpace()
            guard i < b.count else { return nil }
            if b[i] == 0x7D { return ranges }
            if b[i] == 0x2C {
                i += 1
                continue
            }
            guard b[i] == 0x22 else { return nil }
            let start = i
            guard skipString() else { return nil }
            let key = Array(b[(start + 1)..<(i - 1)])
            skipSpace()
            guard i < b.count, b[i] == 0x3A else { return nil }
            i += 1
            skipSpace()
            guard skipValue() else { return nil }
            if sampled.contains(key) { ranges.append(start..<i) }
        }
    }
}
