import FelhomCore
import Foundation

/// An operator key the agent trusts, with its role.
public struct PinnedSigner: Sendable, Equatable {
    /// What the key is for. Operational keys sign day-to-day ops; the recovery key is kept offline
    /// for when the operational key is lost. The verifier reports the role; policy decides.
    public enum Role: String, Sendable, CaseIterable { case operational, recovery }

    public var name: String
    public var key: SSHPublicKey
    public var role: Role
    /// From `namespaces="…"`: if present, must include the op namespace.
    public var namespaces: [String]?
    public var validAfter: Date?
    public var validBefore: Date?

    public init(
        name: String, key: SSHPublicKey, role: Role = .operational, namespaces: [String]? = nil,
        validAfter: Date? = nil, validBefore: Date? = nil
    ) {
        self.name = name
        self.key = key
        self.role = role
        self.namespaces = namespaces
        self.validAfter = validAfter
        self.validBefore = validBefore
    }
}

extension PinnedSigner {
    /// The pinned signer of `sig`'s key, checked for `namespace` (its `namespaces="…"` option) and
    /// its validity window at `now`; throws ``SignatureError/Code/unknownSigner`` naming why not.
    public static func match(_ sig: SSHSignature, in signers: [PinnedSigner], namespace: String, now: Date) throws(SignatureError) -> PinnedSigner {
        guard let signer = signers.first(where: { $0.key == sig.publicKey }) else {
            throw SignatureError(.unknownSigner, "key \(sig.publicKey.fingerprint) is not a pinned key for \(namespace)")
        }
        if let ns = signer.namespaces, !ns.contains(namespace) {
            throw SignatureError(.unknownSigner, "key of \(signer.name) is not allowed for namespace \(namespace)")
        }
        if let after = signer.validAfter, now < after {
            throw SignatureError(.unknownSigner, "key of \(signer.name) is not valid before \(after.formatted(.iso8601))")
        }
        if let before = signer.validBefore, now > before {
            throw SignatureError(.unknownSigner, "key of \(signer.name) expired at \(before.formatted(.iso8601))")
        }
        return signer
    }
}

/// Reads pinned signers from an OpenSSH `allowed_signers` file, so one file serves `ssh-keygen -Y
/// verify` and Felhom alike: `principals [options] keytype base64 [comment]`. Supported options:
/// `namespaces="…"`, `valid-after="…"`, `valid-before="…"`. The role is written in the comment as
/// `role=recovery` (default `role=operational`); OpenSSH ignores comments.
public enum AllowedSigners {
    public static func parse(_ text: String) throws(SignatureError) -> [PinnedSigner] {
        var out: [PinnedSigner] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            do {
                out.append(try parseLine(line))
            } catch {
                throw SignatureError(.malformed, "allowed signers line \(i + 1): \(error.message)")
            }
        }
        return out
    }

    /// Splits on whitespace outside double quotes.
    static func tokens(_ s: String) -> [String] {
        var out: [String] = []
        var cur = ""
        var quoted = false
        for ch in s {
            if ch == "\"" { quoted.toggle() }
            if (ch == " " || ch == "\t") && !quoted {
                if !cur.isEmpty {
                    out.append(cur)
                    cur = ""
                }
            } else {
                cur.append(ch)
            }
        }
        if !cur.isEmpty { out.append(cur) }
        return out
    }

    static func parseLine(_ line: String) throws(SignatureError) -> PinnedSigner {
        var t = tokens(line)
        guard t.count >= 3 else { throw SignatureError(.malformed, "expected 'principals [options] keytype key'") }
        let name = t.removeFirst().replacingOccurrences(of: "\"", with: "")
        guard !name.isEmpty else { throw SignatureError(.malformed, "the principals field is empty (\"\" names no one)") }
        var options: String?
        if SSHPublicKey.Algorithm(rawValue: t[0]) == nil, !t[0].hasPrefix("ssh-"), !t[0].hasPrefix("ecdsa-"), !t[0].hasPrefix("sk-") {
            options = t.removeFirst()
        }
        guard t.count >= 2 else { throw SignatureError(.malformed, "missing key") }
        let key = try SSHPublicKey(openSSHLine: t[0] + " " + t[1])
        let comment = t.dropFirst(2)
        var role = PinnedSigner.Role.operational
        for word in comment where word.hasPrefix("role=") {
            guard let r = PinnedSigner.Role(rawValue: String(word.dropFirst(5))) else {
                throw SignatureError(.malformed, "unknown \(word) (use role=operational or role=recovery)")
            }
            role = r
        }
        var signer = PinnedSigner(name: name, key: key, role: role)
        if let options {
            var seen = Set<String>()
            for opt in splitOptions(options) {
                let kv = opt.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                guard let first = kv.first, !first.isEmpty else {
                    throw SignatureError(
                        .malformed, "empty option in '\(TerminalText.escaped(options))' (options are comma-separated name or name=\"value\")")
                }
                let k = first.lowercased()
                let v = kv.count > 1 ? kv[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")) : nil
                guard seen.insert(k).inserted else { throw SignatureError(.malformed, "option \(k) given twice") }
                switch (k, v) {
                case ("namespaces", let v?): signer.namespaces = v.split(separator: ",").map(String.init)
                case ("valid-after", let v?): signer.validAfter = try time(v)
                case ("valid-before", let v?): signer.validBefore = try time(v)
                case ("cert-authority", _): throw SignatureError(.malformed, "certificate authorities are not supported for operator keys")
                default: throw SignatureError(.malformed, "unsupported option '\(opt)'")
                }
            }
        }
        return signer
    }

    static func splitOptions(_ s: String) -> [String] {
        var out: [String] = []
        var cur = ""
        var quoted = false
        for ch in s {
            if ch == "\"" { quoted.toggle() }
            if ch == "," && !quoted {
                out.append(cur)
                cur = ""
            } else {
                cur.append(ch)
            }
        }
        if !cur.isEmpty { out.append(cur) }
        return out
    }

    /// `YYYYMMDD[Z]` or `YYYYMMDDHHMM[SS][Z]`; without `Z` the time is local, as in OpenSSH.
    static func time(_ s: String) throws(SignatureError) -> Date {
        var text = s
        var tz = TimeZone.current
        if text.hasSuffix("Z") || text.hasSuffix("z") {
            text.removeLast()
            tz = TimeZone(identifier: "UTC") ?? tz
        }
        guard text.allSatisfy(\.isNumber), [8, 12, 14].contains(text.count) else {
            throw SignatureError(.malformed, "invalid time '\(s)' (YYYYMMDD[HHMM[SS]][Z])")
        }
        let d = Array(text).map { Int(String($0)) ?? 0 }
        func num(_ a: Int, _ n: Int) -> Int { d[a..<a + n].reduce(0) { $0 * 10 + $1 } }
        var c = DateComponents()
        c.year = num(0, 4)
        c.month = num(4, 2)
        c.day = num(6, 2)
        if text.count >= 12 {
            c.hour = num(8, 2)
            c.minute = num(10, 2)
        }
        if text.count == 14 { c.second = num(12, 2) }
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = tz
        guard let date = cal.date(from: c) else { throw SignatureError(.malformed, "invalid time '\(s)'") }
        return date
    }
}
