import Crypto
import FelhomAPI
import FelhomCore
import FelhomHubClient
import Foundation
import Proxmox

/// The box's side of zero-knowledge backups (SPEC §1 rule 5, §8): it makes the PBS encryption key
/// on the box, gives it to the PBS storage, wraps it under a recovery code shown only on the box,
/// uploads the wrapped envelope to the hub, and proves in a scheduled drill that the hub's copy
/// still opens to the key in use — without the code, which the box never keeps.
///
/// Files in `state_dir/escrow/` (0600): `envelope.json` (what the hub holds) and `wrapping.key`
/// (the scrypt output that opens it — a key for the drill, not the code; whoever reads it is root
/// on the box and holds the PBS key anyway). `drill.json` records the last drill.
public struct EscrowKeeper: Sendable {
    let stateDir: String
    /// The PBS key file (`backup.key_file`; PVE keeps it as `/etc/pve/priv/storage/<ID>.enc`).
    let keyFile: String
    /// The PBS storage the key belongs to.
    let storage: String
    let pve: any PVEAPI
    let backend: PrivilegedBackend
    /// The hub, with this host's key.
    public let hub: HubClient
    let hostID: String
    let params: EscrowEnvelope.KDFParams
    /// The operator-managed tier: wrap to this operator escrow public key (raw 32 bytes) instead of
    /// a recovery code.
    let operatorKeyRaw: Data?
    var operatorKey: Curve25519.KeyAgreement.PublicKey? {
        operatorKeyRaw.flatMap { try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: $0) }
    }

    public init(
        stateDir: String, keyFile: String, storage: String, pve: any PVEAPI, backend: PrivilegedBackend, hub: HubClient, hostID: String,
        params: EscrowEnvelope.KDFParams = .standard, operatorKey: Curve25519.KeyAgreement.PublicKey? = nil
    ) {
        self.operatorKeyRaw = operatorKey?.rawRepresentation
        self.stateDir = stateDir
        self.keyFile = keyFile
        self.storage = storage
        self.pve = pve
        self.backend = backend
        self.hub = hub
        self.hostID = hostID
        self.params = params
    }

    var dir: String { stateDir + "/escrow" }
    var envelopeFile: String { dir + "/envelope.json" }
    var wrappingKeyFile: String { dir + "/wrapping.key" }
    var drillFile: String { dir + "/drill.json" }

    /// What `escrow init` did.
    public struct Outcome: Sendable {
        /// The PBS key's fingerprint.
        public var fingerprint: String
        /// A key was made now (false: the existing key file was used).
        public var keyCreated: Bool
        /// The storage was given the key now (false: it had it already).
        public var storageConfigured: Bool
        /// The new recovery code — set only when a new envelope was made and uploaded; shown once.
        public var code: RecoveryCode?
        /// The operator-managed tier: the fingerprint of the operator escrow key the envelope is
        /// wrapped to (no recovery code then).
        public var operatorKey: String?
        /// A new envelope was made and uploaded now.
        public var wrappedNow = false
    }

    /// Whether a kept envelope is of the tier this box is configured for.
    func fitsTier(_ env: EscrowEnvelope) -> Bool {
        guard let operatorKey else { return !env.isOperatorManaged }
        return env.isOperatorManaged && env.kdfParams.recipient == operatorKey.rawRepresentation.base64EncodedString()
    }

    /// `felhom-agent escrow init`, idempotent: the existing key file is used (else, when the storage
    /// has no key yet, a key is made and written first, so a crash never loses it); the storage
    /// gets the key unless it shows that fingerprint already (another key there is an error, never
    /// overwritten — a new key would lock the earlier backups away); an envelope for this
    /// key is uploaded again as it is unless `rotate` — only a new envelope has a new code. The
    /// code is returned only after the hub stored the envelope that it opens.
    public func initialize(rotate: Bool = false) async throws(EscrowError) -> Outcome {
        try makeDir()
        // The storage first: a key it already has is never replaced by a new one.
        let current = try await PBSStorageKey.current(storage: storage, pve: pve)
        var created = false
        if !FileManager.default.fileExists(atPath: keyFile) {
            guard current.isEmpty else {
                throw EscrowError(
                    .fingerprintMismatch,
                    "storage '\(storage)' already encrypts with key \(current), but '\(keyFile)' does not exist: point backup.key_file at the storage's key (/etc/pve/priv/storage/\(storage).enc); a new key would lock the earlier backups away"
                )
            }
            let (json, _) = PBSKey.generate()
            do throws(AppendLogError) { try DurableFile.write(Array(json), to: keyFile, mode: 0o600) } catch {
                throw EscrowError(.io, "cannot write the PBS key file '\(keyFile)': \(error.message)")
            }
            created = true
        }
        let json: Data
        let raw: [UInt8]
        do throws(BackupError) {
            json = FileManager.default.contents(atPath: keyFile) ?? Data()
            raw = try PBSKey.rawKey(json: json)
        } catch { throw EscrowError(.io, "the PBS key file '\(keyFile)': \(error.message)") }
        let fingerprint = PBSKey.fingerprint(rawKey: raw)
        let storageConfigured = try await PBSStorageKey.install(
            keyJSON: String(decoding: json, as: UTF8.self), fingerprint: fingerprint, current: current, storage: storage, backend: backend,
            hint: "point backup.key_file at the storage's key (/etc/pve/priv/storage/\(storage).enc)")

        // The envelope: the existing one for this key, or a new one under a new code.
        // A change of tier (or of operator escrow key) makes a new envelope, as --rotate does.
        let operatorFingerprint = operatorKey.map { OperatorEscrowKey.fingerprint($0.rawRepresentation) }
        if !rotate, let data = FileManager.default.contents(atPath: envelopeFile), let env = try? EscrowEnvelope.decode(data),
            PBSKey.normalized(env.keyFingerprint) == fingerprint, fitsTier(env)
        {
            try await upload(env, fingerprint: fingerprint)
            return Outcome(
                fingerprint: fingerprint, keyCreated: created, storageConfigured: storageConfigured, code: nil, operatorKey: operatorFingerprint)
        }
        let code: RecoveryCode?
        let env: EscrowEnvelope
        let wrapping: SymmetricKey
        if let operatorKey {
            code = nil
            (env, wrapping) = try EscrowEnvelope.wrap(rawKey: raw, operatorKey: operatorKey)
        } else {
            let made = RecoveryCode.generate()
            code = made
            (env, wrapping) = try EscrowEnvelope.wrap(rawKey: raw, code: made, params: params)
        }
        try await upload(env, fingerprint: fingerprint)
        // Only now, with the hub holding it: keep the envelope and the drill's key.
        do throws(AppendLogError) { try keep(env, wrapping: wrapping) } catch {
            throw EscrowError(.io, "the hub holds the new envelope, but it could not be kept here (\(error.message)); run escrow init --rotate again")
        }
        return Outcome(
            fingerprint: fingerprint, keyCreated: created, storageConfigured: storageConfigured, code: code, operatorKey: operatorFingerprint,
            wrappedNow: true)
    }

    /// Keeps what the drill needs: the wrapping key and the envelope it opens (0600 each).
    func keep(_ env: EscrowEnvelope, wrapping: SymmetricKey) throws(AppendLogError) {
        try DurableFile.write(wrapping.withUnsafeBytes { Array($0) }, to: wrappingKeyFile, mode: 0o600)
        try DurableFile.write(Array(env.encoded()), to: envelopeFile, mode: 0o600)
    }

    func upload(_ env: EscrowEnvelope, fingerprint: String) async throws(EscrowError) {
        do {
            try await hub.reportRecovery(
                BoxRecoveryReport(storageManifest: .array([]), pbsFingerprint: fingerprint, wrappedEscrowKey: try JSONValue.parse(env.encoded())))
        } catch {
            throw EscrowError(.io, "the hub did not take the escrow envelope: \(error)")
        }
    }

    func makeDir() throws(EscrowError) {
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]) } catch {
            throw EscrowError(.io, "cannot create '\(dir)'")
        }
    }

    /// Whether `escrow init` has run here (a drill has something to check).
    public var initialized: Bool { FileManager.default.fileExists(atPath: wrappingKeyFile) }

    /// When the last drill ran (nil: never).
    public var lastDrill: Date? {
        guard let data = FileManager.default.contents(atPath: drillFile), let doc = try? JSONValue.parse(data),
            let at = doc["at"]?.stringValue
        else { return nil }
        return RFC3339.parse(at)
    }

    /// The escrow drill: the hub's copy of the envelope must open with the kept wrapping key to
    /// the key this box backs up with (`boxKey`, a fingerprint). Returns the event to report:
    /// `escrow_verified`, or `escrow_drill_failed` (critical) with the reason. Never throws: a
    /// failure is the finding.
    public func drill(boxKey: String, now: Date = Date()) async -> AgentEvent {
        func failed(_ reason: String, _ message: String) -> AgentEvent {
            AgentEvent(
                type: "escrow_drill_failed", severity: .critical,
                data: ["reason": .string(reason), "message": .string(String(message.prefix(300)))])
        }
        let result: AgentEvent
        if let keyData = FileManager.default.contents(atPath: wrappingKeyFile), keyData.count == 32 {
            do {
                let bundle = try await hub.recoveryBundle(hostID: hostID)
                let held = bundle["box_reported"]?["wrapped_escrow_key"] ?? .null
                if held == .null {
                    result = failed("missing", "the hub holds no escrow envelope for this box")
                } else {
                    let env = try EscrowEnvelope.decode(held.serialized())
                    let raw = try env.unwrap(with: SymmetricKey(data: keyData))
                    let fp = PBSKey.fingerprint(rawKey: raw)
                    result =
                        fp == PBSKey.normalized(boxKey)
                        ? AgentEvent(
                            type: "escrow_verified", severity: .info, data: ["key_fingerprint": .string(fp), "created": .string(env.created)])
                        : failed("stale", "the hub's envelope opens to key \(fp), but this box backs up with \(boxKey): run escrow init --rotate")
                }
            } catch let error as EscrowError {
                result = failed(error.code.rawValue, error.message)
            } catch {
                result = failed("hub_unreachable", "\(error)")
            }
        } else {
            result = failed("not_initialized", "escrow init has not run on this box")
        }
        try? makeDir()
        let record = JSONValue.object(["at": .string(RFC3339.format(now)), "type": .string(result.type)])
        try? DurableFile.write(Array(record.serialized()), to: drillFile, mode: 0o600)
        return result
    }
}

/// How the running agent keeps its escrow (`backup.key_file`, `escrow.*`).
public struct EscrowSettings: Sendable {
    public var keyFile: String
    public var storage: String
    public var drillDays: Int
    /// Runs the fenced `pvesm set` (escrow init) — the drill needs no root command.
    public var runner: any CommandRunner
    public var params: EscrowEnvelope.KDFParams
    /// The operator-managed tier's operator escrow public key (`escrow.operator_public_key`), raw.
    var operatorKeyRaw: Data?
    public var operatorKey: Curve25519.KeyAgreement.PublicKey? {
        operatorKeyRaw.flatMap { try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: $0) }
    }
    public init(
        keyFile: String, storage: String = "pbs-felhom", drillDays: Int = 7, runner: any CommandRunner, params: EscrowEnvelope.KDFParams = .standard,
        operatorKey: Curve25519.KeyAgreement.PublicKey? = nil
    ) {
        self.operatorKeyRaw = operatorKey?.rawRepresentation
        self.keyFile = keyFile
        self.storage = storage
        self.drillDays = max(1, drillDays)
        self.runner = runner
        self.params = params
    }
}

/// The one place that gives a PBS storage its encryption key (escrow init, disaster recovery):
/// nothing when it has this key already, the fenced `pvesm set` when it has none, and an error
/// naming both keys when it has another — a storage's key is never replaced, which would lock the
/// backups made under it away.
enum PBSStorageKey {
    /// The fingerprint the storage shows (`""`: no key).
    static func current(storage: String, pve: any PVEAPI) async throws(EscrowError) -> String {
        let configured: String?
        do { configured = try await pve.storages().first { $0.storage == storage }.map { $0.encryptionKey ?? "" } } catch {
            throw EscrowError(.io, "cannot read storage '\(storage)' from PVE: \(error)")
        }
        guard let configured else { throw EscrowError(.io, "PVE has no storage '\(storage)' (add the PBS storage first)") }
        return PBSKey.normalized(configured)
    }

    /// Gives `storage` the key unless it has it; returns whether it was set now.
    static func install(
        keyJSON: String, fingerprint: String, current: String, storage: String, backend: PrivilegedBackend, hint: String
    ) async throws(EscrowError) -> Bool {
        if current == PBSKey.normalized(fingerprint) { return false }
        guard current.isEmpty else {
            throw EscrowError(.fingerprintMismatch, "storage '\(storage)' uses key \(current), but the key here is \(fingerprint): \(hint)")
        }
        do { try await backend.setEncryptionKey(storage: storage, keyJSON: keyJSON) } catch {
            throw EscrowError(.io, "cannot give storage '\(storage)' its key: \(error)")
        }
        return true
    }
}
