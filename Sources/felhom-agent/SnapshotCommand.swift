import ArgumentParser
import FelhomAPI
import FelhomAgent
import FelhomCore
import FelhomHubClient
import Foundation
import Logging
import ObjectStore
import Synchronization

/// `felhom-agent snapshot list|restore|run`: this box's volume snapshots in object storage
/// (docs/object-storage.md). A restore writes a new file only; restoring over a volume in use is
/// an operator-signed op.
struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "This box's volume snapshots in object storage: list them, restore one to a new file, take one now.",
        subcommands: [List.self, Restore.self, Run.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the snapshots of a volume (or of every volume), newest first.")
        @Option(name: .long, help: "Agent config file (JSON).") var config: String?
        @Option(name: .long, help: "The PVE volume id, e.g. local-lvm:vm-100-disk-1.") var volume: String?

        func run() async throws {
            let t = try await tools(config)
            let (hub, hostID) = (t.hub, t.hostID)
            let records: [VolumeSnapshotRecord]
            do { records = try await hub.volumeSnapshots(hostID: hostID, volumeID: volume) } catch { fail("cannot list the snapshots: \(error)") }
            if records.isEmpty { print("no snapshots\(volume.map { " of \($0)" } ?? "")") }
            for r in records {
                print("\(r.snapshotID)  \(RFC3339.format(r.createdAt))  \(r.state)  \(r.size) bytes  \(TerminalText.escaped(r.volumeID))")
            }
        }
    }

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Download, verify and decrypt a snapshot into a new file (the newest complete one unless --snapshot).",
            discussion: """
                Every chunk and the object's checksum are verified before the file appears under its name; on any \
                failure nothing is left behind. The target must not exist.
                """)
        @Option(name: .long, help: "Agent config file (JSON).") var config: String?
        @Option(name: .long, help: "The PVE volume id, e.g. local-lvm:vm-100-disk-1.") var volume: String
        @Option(name: .long, help: "The snapshot id (default: the newest complete one).") var snapshot: String?
        @Option(name: .long, help: "The file to create.") var to: String

        func run() async throws {
            SnapshotFormat.limitMallocArenas()
            let t = try await tools(config)
            let (hub, hostID, restorer) = (t.hub, t.hostID, t.restorer)
            let records: [VolumeSnapshotRecord]
            do { records = try await hub.volumeSnapshots(hostID: hostID, volumeID: volume) } catch { fail("cannot list the snapshots: \(error)") }
            do {
                let record = try SnapshotRestorer.choose(records, volumeID: volume, snapshotID: snapshot)
                print("restore: \(volume) snapshot \(record.snapshotID) (\(record.size) bytes) → \(to)")
                let last = Mutex(ContinuousClock.now)
                let total = record.objectSize
                let bytes = try await restorer.restore(record, to: to) { done in
                    let due = last.withLock { t in
                        guard ContinuousClock.now - t >= .seconds(5) else { return false }
                        t = .now
                        return true
                    }
                    if due { print("restore: \(done) of \(total) bytes verified") }
                }
                print("restore: \(bytes) bytes written to \(to); every chunk and the checksum verified")
            } catch { fail("\(error.code): \(error.message); \(to) was not created") }
        }
    }
}

func tools(_ config: String?, exclusive: Bool = false) async throws -> Agent.SnapshotTools {
    let cfg: AgentConfig
    do { cfg = try AgentConfig.load(file: config) } catch { throw ValidationError("\(error)") }
    do { return try await Agent.snapshotTools(config: cfg, logger: Logger(label: "felhom.agent"), exclusive: exclusive) } catch {
        fail("\(error)")
    }
}

func fail(_ text: String) -> Never {
    FileHandle.standardError.write(Data("felhom-agent snapshot: \(text)\n".utf8))
    Foundation.exit(1)
}
