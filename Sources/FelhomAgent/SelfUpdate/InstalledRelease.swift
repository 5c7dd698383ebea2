import FelhomCore
import FelhomGate
import Foundation

/// What an installed slot holds besides the binary: the release manifest and signature it was
/// verified with (`<slot>/release.json`), so the agent knows which release it runs.
public struct InstalledRelease: Sendable, Equatable, Codable {
    public var manifest: String
    public var signature: String

    public init(manifest: String, signature: String) {
        self.manifest = manifest
        self.signature = signature
    }

    /// The version of the running agent: the manifest version of the slot its executable lives
    /// in (`/opt/felhom/agent/<slot>/felhom-agent` next to `release.json`), else the version
    /// compiled in (a development build, or an agent not installed in an A/B root).
    public static func runningVersion(executable: String = CommandLine.arguments.first ?? "") -> String {
        let resolved = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? executable
        let dir = (resolved as NSString).deletingLastPathComponent
        guard UpdateRoot.slots.contains((dir as NSString).lastPathComponent),
            let data = FileManager.default.contents(atPath: dir + "/release.json"),
            let installed = try? JSONDecoder().decode(InstalledRelease.self, from: data),
            let manifest = try? ReleaseManifest(parsing: Array(installed.manifest.utf8)), manifest.component == .agent
        else { return FelhomVersion.current }
        return manifest.version
    }
}

/// Operator-signed permissions to install an older release (`agent.rollback`,
/// `controller.rollback`), kept in `state_dir/rollback-allowed.json` as `{component: version}`.
/// Without one, a box refuses any release older than the one it last committed, so a compromised
/// hub cannot push an old, vulnerable (but signed) release.
public struct RollbackAuthorizations: Sendable {
    public let path: String

    public init(stateDir: String) { path = stateDir + "/rollback-allowed.json" }

    public func all() -> [String: String] {
        guard let data = FileManager.default.contents(atPath: path) else { return [:] }
        return (try? JSONDecoder().decode([String: String].self, from: data)) ?? [:]
    }

    public func allows(_ component: ReleaseManifest.Component, version: String) -> Bool { all()[component.rawValue] == version }

    /// Records the permission (durably) for exactly this version.
    public func authorize(_ component: ReleaseManifest.Component, version: String) throws {
        var map = all()
        map[component.rawValue] = version
        try write(map)
    }

    /// Drops the permission once used.
    public func consume(_ component: ReleaseManifest.Component) {
        var map = all()
        guard map.removeValue(forKey: component.rawValue) != nil else { return }
        try? write(map)
    }

    func write(_ map: [String: String]) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let bytes = Array(try enc.encode(map))
        do throws(AppendLogError) { try DurableFile.write(bytes, to: path, mode: 0o600) } catch {
            throw SignedOpError(message: "cannot record the rollback permission: \(error.message)")
        }
    }
}
