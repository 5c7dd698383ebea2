import FelhomCore
import Foundation

/// What the controller remembers across restarts, in `state_dir/settings.json`, written whole
/// (temporary file, fsync, rename, directory fsync): a crash leaves the old or the new file.
public struct ControllerSettings: Codable, Sendable, Equatable {
    /// A storage path apps may use.
    public struct StoragePath: Codable, Sendable, Equatable {
        public var path: String
        public var label: String
        /// The default location for new app data.
        public var isDefault: Bool
        /// Whether new apps may be placed there.
        public var schedulable: Bool
        /// The filesystem UUID it was seen with (to recognise the same disk when it comes back).
        public var filesystemUUID: String?
        public var disconnectedAt: Date?
        public var decommissionedAt: Date?
        public var migratedTo: String?

        public init(path: String, label: String, isDefault: Bool = false, schedulable: Bool = true, filesystemUUID: String? = nil) {
            self.path = path
            self.label = label
            self.isDefault = isDefault
            self.schedulable = schedulable
            self.filesystemUUID = filesystemUUID
        }

        enum CodingKeys: String, CodingKey {
            case path, label, schedulable
            case isDefault = "default"
            case filesystemUUID = "filesystem_uuid"
            case disconnectedAt = "disconnected_at"
            case decommissionedAt = "decommissioned_at"
            case migratedTo = "migrated_to"
        }
    }

    public var storagePaths: [StoragePath] = []
    /// Stacks stopped on purpose (`felhom-controller stacks stop`): the watchdog leaves them alone.
    public var stoppedStacks: [String] = []
    /// Stacks the watchdog stopped because a storage path under their bind mounts vanished, by path.
    public var stoppedByDisconnect: [String: [String]] = [:]
    /// Stacks that opted in to reading their secrets files through a group (stack → group name):
    /// the bundles they use are written 0440 root:GROUP instead of 0400 root:root.
    public var secretsGroups: [String: String] = [:]

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        storagePaths = try c.decodeIfPresent([StoragePath].self, forKey: .storagePaths) ?? []
        stoppedStacks = try c.decodeIfPresent([String].self, forKey: .stoppedStacks) ?? []
        stoppedByDisconnect = try c.decodeIfPresent([String: [String]].self, forKey: .stoppedByDisconnect) ?? [:]
        secretsGroups = try c.decodeIfPresent([String: String].self, forKey: .secretsGroups) ?? [:]
    }

    enum CodingKeys: String, CodingKey {
        case storagePaths = "storage_paths"
        case stoppedStacks = "stopped_stacks"
        case stoppedByDisconnect = "stopped_by_disconnect"
        case secretsGroups = "secrets_groups"
    }

    /// The file in `stateDir`.
    public static func path(in stateDir: String) -> String { stateDir + "/settings.json" }

    /// Reads the settings; a missing file is the defaults, a damaged one an error naming it
    /// (never silently reset: it records which stacks must stay stopped).
    public static func load(stateDir: String) throws(ControllerError) -> ControllerSettings {
        let file = path(in: stateDir)
        return try StateFiles.read(ControllerSettings.self, from: file) { "settings file '\(file)' is damaged (\($0)); fix or move it away" }
            ?? ControllerSettings()
    }

    /// Read-modify-write under `state_dir/settings.lock` (waiting for it), so the controller and a
    /// CLI call changing the settings at the same time do not lose each other's change.
    public static func update<T>(stateDir: String, _ change: (inout ControllerSettings) async throws(ControllerError) -> T)
        async throws(ControllerError) -> T
    {
        try StateFiles.ensureDirectory(stateDir)
        var lock: FileLock?
        for attempt in 0..<600 {
            do {
                lock = try FileLock(path: stateDir + "/settings.lock")
                break
            } catch {
                if error.code == .unopenable { throw ControllerError(.config, error.message) }
                if attempt == 599 { throw ControllerError(.busy, "state_dir/settings.lock stayed held for a minute") }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        defer { lock?.release() }
        var settings = try load(stateDir: stateDir)
        let before = settings
        let result = try await change(&settings)
        if settings != before { try settings.save(stateDir: stateDir) }
        return result
    }

    /// Writes the settings atomically (mode 0600), creating `stateDir` (0700) if needed.
    public func save(stateDir: String) throws(ControllerError) {
        try StateFiles.write(self, to: Self.path(in: stateDir), in: stateDir, what: "settings", pretty: true)
    }
}
