import FelhomAPI
import FelhomCore
import Foundation

/// Disaster recovery (SPEC §3): everything a replacement box needs, from durable sources only —
/// the host and customer rows, the DR record, the last published desired state — never from
/// report history, which is pruned. And the customer's passphrase retrieval of it, rate-limited.
extension Hub {
    public func setDRRecord(hostID: String, _ r: DRRecord, by principal: Principal) async throws {
        guard principal == .operator else { throw HubError.forbidden("set disaster-recovery records (operator only)") }
        guard try await hostRow(hostID) != nil else { throw HubError.notFound("host \(hostID)") }
        if let fp = r.repositoryFingerprint, !Pattern.whole(fp, #"([0-9a-fA-F]{2}:){31}[0-9a-fA-F]{2}"#) {
            throw HubError.badRequest("must be a SHA-256 fingerprint like 9c:2f:…", path: "$.repository_fingerprint")
        }
        if let ns = r.pbsNamespace { try Validate.text(ns, "$.pbs_namespace", max: 200) }
        if let key = r.wrappedEscrowKey, Data(base64Encoded: key) == nil {
            throw HubError.badRequest("must be base64 (the key as wrapped on the customer's side)", path: "$.wrapped_escrow_key")
        }
        let now = self.now
        try await store.withDB { db in
            try await RecoveryTable.saveOperatorRecord(
                hostID: hostID, pbsNamespace: r.pbsNamespace, repositoryFingerprint: r.repositoryFingerprint, wrappedEscrowKey: r.wrappedEscrowKey,
                tunnelTokenRef: r.tunnelTokenRef, at: now, in: db)
        }
    }

    /// The box's own view (its storage manifest, the PBS fingerprint it sees, its escrow envelope),
    /// kept apart as `box_*`. The envelope is opaque: the hub checks only that it looks like one
    /// (a `felhom-escrow-v1` object of at most 8 KiB), never what it wraps.
    public func reportDRFromBox(
        storageManifest: JSONValue, pbsFingerprint: String?, wrappedEscrowKey: JSONValue? = nil, by principal: Principal
    ) async throws {
        guard case .host(let hostID, _) = principal else { throw HubError.forbidden("report recovery data (host keys only)") }
        guard case .array = storageManifest else { throw HubError.badRequest("must be an array of disks", path: "$.storage_manifest") }
        var envelope: String?
        if let w = wrappedEscrowKey, w != .null {
            guard case .object(let o) = w, o["format"]?.stringValue == "felhom-escrow-v1" else {
                throw HubError.badRequest("must be an escrow envelope (format felhom-escrow-v1, docs/formats.md)", path: "$.wrapped_escrow_key")
            }
            // The bounds the OpenAPI document states (code points, as JSON Schema counts them).
            for (k, max) in [("kdf", 40), ("salt", 200), ("nonce", 200), ("ciphertext", 2000), ("key_fingerprint", 200), ("created", 64)] {
                guard let v = o[k]?.stringValue else { throw HubError.badRequest("required string", path: "$.wrapped_escrow_key.\(k)") }
                guard v.unicodeScalars.count <= max else {
                    throw HubError.badRequest("at most \(max) characters", path: "$.wrapped_escrow_key.\(k)")
                }
            }
            guard case .object? = o["kdf_params"] else {
                throw HubError.badRequest("required object", path: "$.wrapped_escrow_key.kdf_params")
            }
            let text = String(decoding: w.serialized(), as: UTF8.self)
            guard text.utf8.count <= 8192 else { throw HubError.badRequest("at most 8 KiB", path: "$.wrapped_escrow_key") }
            envelope = text
        }
        let now = self.now
        let escrow = envelope
        try await store.transaction { db in
            try await RecoveryTable.saveBoxReport(
                hostID: hostID, storageManifest: String(decoding: storageManifest.serialized(), as: UTF8.self), pbsFingerprint: pbsFingerprint,
                at: now, in: db)
            if let escrow { try await RecoveryTable.saveBoxEscrow(hostID: hostID, envelope: escrow, at: now, in: db) }
        }
    }

    /// The recovery bundle of a host: the operator's key, or the host's own key (a box reads its
    /// own bundle for its escrow drill and after a re-enrollment); customers use
    /// ``retrieve(domain:passphrase:what:)``.
    public func recovery(hostID: String, by principal: Principal) async throws -> JSONValue {
        switch principal {
        case .operator: break
        case .host(let own, _) where own == hostID: break
        case .host: throw HubError.notFound("host \(hostID)")
        default: throw HubError.forbidden("read recovery bundles (operator key, the host's own key, or the customer's passphrase)")
        }
        return try await recoveryBundle(hostID: hostID, revealTunnelToken: principal != .operator)
    }

    /// The bundle; `tunnel_token` (the connector token in clear) only with `revealTunnelToken`,
    /// which is for the host's own key: the operator and the customer see that one is set.
    func recoveryBundle(hostID: String, revealTunnelToken: Bool = false) async throws -> JSONValue {
        guard let host = try await hostRow(hostID) else { throw HubError.notFound("host \(hostID)") }
        let customer = try await customer(host.customerID, by: .operator)
        let (dr, desired, tunnel) = try await store.withDB { db in
            (
                try await RecoveryTable.record(hostID: hostID, in: db),
                try await publishedSpec(hostID, in: db),
                try await RecoveryTable.tunnelToken(hostID: hostID, in: db)
            )
        }
        var tunnelView: [String: JSONValue] = ["set": .bool(tunnel != nil)]
        if let tunnel {
            tunnelView["fingerprint"] = .string(tunnel.fingerprint)
            tunnelView["tunnel_id"] = .string(tunnel.tunnelID)
            tunnelView["updated_at"] = .string(Timestamp(secondsSince1970: tunnel.updatedAt).description)
            if revealTunnelToken { tunnelView["connector_token"] = .string(try openTunnelToken(hostID: hostID, sealed: tunnel.sealed)) }
        }
        func text(_ col: String) -> JSONValue { (try? dr?.decode(column: col, as: String?.self)).flatMap { $0 }.map { .string($0) } ?? .null }
        let manifest =
            (try? dr?.decode(column: "box_storage_manifest", as: String?.self)).flatMap { $0 }.flatMap { try? JSONValue.parse($0) } ?? .array([])
        return [
            "identity": [
                "host_id": .string(host.id), "host_name": .string(host.name), "customer_id": .string(customer.id),
                "customer_name": .string(customer.name),
                "domain": .string(customer.domain), "timezone": .string(customer.timezone),
            ],
            "tunnel_token_ref": text("tunnel_token_ref"),
            "tunnel": .object(tunnelView),
            "pbs": ["namespace": text("pbs_namespace"), "repository_fingerprint": text("repository_fingerprint")],
            "wrapped_escrow_key": text("wrapped_escrow_key"),
            "box_reported": [
                "storage_manifest": manifest, "pbs_fingerprint": text("box_pbs_fingerprint"),
                "wrapped_escrow_key": (try? dr?.decode(column: "box_wrapped_escrow_key", as: String?.self)).flatMap { $0 }
                    .flatMap { try? JSONValue.parse($0) } ?? .null,
                "reported_at": (try? dr?.decode(column: "box_reported_at", as: Int64?.self)).flatMap { $0 }.map { .int($0) } ?? .null,
            ],
            "desired": desired.map { ["generation": .int($0.1), "guests": (try? JSONValue.parse($0.0.encoded()))?["guests"] ?? .array([])] } ?? .null,
        ]
    }

    /// Sets a new retrieval passphrase for the customer (operator); returns it (shown once).
    public func newRetrievalPassphrase(customerID: String, by principal: Principal) async throws -> String {
        guard principal == .operator else { throw HubError.forbidden("set retrieval passphrases (operator only)") }
        _ = try await customer(customerID, by: principal)
        let words = Passphrase.generate()
        let hash = try Passphrase.hash(words)
        let now = self.now
        try await store.transaction { db in
            try await CustomersTable.setRetrievalHash(customerID, hash: hash, in: db)
            // A new passphrase also lifts any lock-out.
            if try await RecoveryTable.clearFailures(customerID: customerID, in: db) > 0 {
                try await recordEvent("retrieval_unlocked", customerID: customerID, data: ["by": "new_passphrase"], at: now, in: db)
            }
        }
        return words
    }

    /// Lifts a customer's retrieval lock-out (operator): their failed attempts are forgotten.
    /// Returns how many were cleared; records `retrieval_unlocked` (and logs it).
    public func unlockRetrieval(customerID: String, by principal: Principal) async throws -> Int {
        guard principal == .operator else { throw HubError.forbidden("lift retrieval locks (operator only)") }
        _ = try await customer(customerID, by: principal)
        let now = self.now
        let cleared = try await store.transaction { db -> Int in
            let cleared = try await RecoveryTable.clearFailures(customerID: customerID, in: db)
            try await recordEvent(
                "retrieval_unlocked", customerID: customerID, data: ["by": "operator", "count": .int(Int64(cleared))], at: now, in: db)
            return cleared
        }
        logger.notice("retrieval lock lifted", metadata: ["customer": "\(customerID)", "failed_attempts_cleared": "\(cleared)"])
        return cleared
    }

    /// At most this many failed attempts per (customer, client) in `retrievalWindow` seconds.
    static let retrievalAttempts = 5
    /// At most this many failed attempts per client, across all domains, in the window.
    static let retrievalAttemptsPerClient = 20
    static let retrievalWindow: Int64 = 15 * 60

    /// A customer fetches their recovery bundle(s) or controller configs with their passphrase.
    ///
    /// Five failed attempts in 15 minutes from one client (its address: see ``client(of:_:)``) lock
    /// retrieval for that customer from that client only (429) — a stranger cannot lock the
    /// customer out — and record `retrieval_locked` (mailed to the operator) once per lock-out; 20
    /// failures from one client across all domains stop that client. The attempt is reserved (as a
    /// failure) before the slow passphrase check, so parallel guesses cannot slip past the limit,
    /// and an unknown domain costs the same work and answers the same as a wrong passphrase.
    public func retrieve(domain: String, passphrase: String, what: String, hubURL: String, client: String = "unknown") async throws -> JSONValue {
        guard ["recovery", "config"].contains(what) else { throw HubError.badRequest("must be recovery or config", path: "$.what") }
        guard domain.count <= 253, passphrase.count <= 512 else { throw HubError.badRequest("too long", path: "$") }
        let refused = HubError(.unauthorized, "retrieval_refused", "domain or passphrase not recognised")
        let now = self.now
        let found = try await store.withDB { db in try await CustomersTable.byDomain(domain.lowercased(), in: db) }
        let cid = found?.id
        // Attempts on unknown domains are counted per client under one name (no row per guessed domain).
        let subject = cid ?? "unknown-domain"
        let attemptID = Ids.make("try")
        let failuresHere = try await store.transaction { db -> Int in
            try await RecoveryTable.lockClient(client, in: db, kind: store.kind)
            let since = now - Self.retrievalWindow
            let here = try await RecoveryTable.failures(client: client, subject: subject, since: since, in: db)
            let fromClient = try await RecoveryTable.failures(client: client, subject: nil, since: since, in: db)
            guard here < Self.retrievalAttempts, fromClient < Self.retrievalAttemptsPerClient else {
                throw HubError(
                    .tooManyRequests, "retrieval_locked", "too many failed attempts; try again in 15 minutes", retryAfter: Int(Self.retrievalWindow))
            }
            // Reserved as a failure before the slow check; turned into a success below if it is one.
            try await RecoveryTable.reserve(id: attemptID, subject: subject, client: client, at: now, in: db)
            return here
        }
        let stored = found?.retrievalHash
        let ok = Passphrase.verify(passphrase, against: stored ?? Passphrase.decoy) && cid != nil && stored != nil
        try await store.transaction { db in
            if ok {
                try await RecoveryTable.markSucceeded(id: attemptID, in: db)
            } else if let cid, failuresHere + 1 == Self.retrievalAttempts {
                try await recordEvent(
                    "retrieval_locked", severity: .warning, customerID: cid,
                    data: [
                        "attempts": .int(Int64(Self.retrievalAttempts)), "window_seconds": .int(Self.retrievalWindow),
                        "client": .string(client),
                    ], at: now, in: db)
            }
        }
        guard ok, let cid else { throw refused }
        let hosts = try await self.hosts(by: .customer(customerID: cid))
        if what == "recovery" {
            var out: [JSONValue] = []
            for host in hosts { out.append(try await recoveryBundle(hostID: host.id)) }
            return ["hosts": .array(out)]
        }
        let guests = try await store.withDB { db in try await GuestsTable.ids(ofCustomer: cid, in: db) }
        var configs: [String: JSONValue] = [:]
        for guest in guests { configs[guest] = try await controllerConfig(guestID: guest, hubURL: hubURL, by: .operator) }
        return ["configs": .object(configs)]
    }
}
