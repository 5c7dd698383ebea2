import ArgumentParser
import FelhomAPI
import FelhomAgent
import FelhomCore
import Foundation
import ObjectStore
import Proxmox
import Synchronization

extension SnapshotCommand {
    /// `felhom-agent snapshot run --volume ID`: one snapshot now, outside the daily round.
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Snapshot one volume now: thin snapshot, encrypt, upload, remove the snapshot, record it on the hub.",
            discussion: """
                First cleans what an interrupted run left (leftover felhom-snap-* volumes, unfinished uploads under the \
                box's prefix), as the agent does at start. Needs the state directory to itself: stop the agent first (it \
                takes the daily snapshots on its own). Exits 1 with the reason when the snapshot fails; the snapshot \
                volume is removed in every case.
                """)
        @Option(name: .long, help: "Agent config file (JSON).") var config: String?
        @Option(name: .long, help: "The PVE volume id, e.g. local-lvm:vm-100-disk-1 (on an LVM-thin storage).") var volume: String

        func run() async throws {
            SnapshotFormat.limitMallocArenas()
            let t = try await tools(config, exclusive: true)
            guard let snapshotter = t.snapshotter else { fail("no snapshotter") }
            for line in await snapshotter.recover() { print("snapshot: \(line)") }
            let storages: [PVEStorageConfig]
            do { storages = try await t.pve.storages() } catch { fail("cannot read the storage configuration from Proxmox VE: \(error)") }
            let byID = Dictionary(storages.map { ($0.storage, $0) }, uniquingKeysWith: { a, _ in a })
            let target: VolumeSnapshotter.Target
            switch SnapshotTargets.target(volumeID: volume, storages: byID) {
            case .success(let found): target = found
            case .failure(let why): fail("\(why.reason): \(why.message)")
            }
            print("snapshot: \(volume) (\(target.volumeGroup)/\(target.logicalVolume)) → object storage under the box's prefix")
            let last = Mutex(ContinuousClock.now)
            let hub = t.hub
            let recorded = Mutex<VolumeSnapshotRecord?>(nil)
            let event = await VolumeSnapshots.run(
                snapshotter, target,
                record: { r in
                    recorded.withLock { $0 = r }
                    try await hub.recordVolumeSnapshot(r)
                },
                progress: { done in
                    let due = last.withLock { t in
                        guard ContinuousClock.now - t >= .seconds(5) else { return false }
                        t = .now
                        return true
                    }
                    if due { print("snapshot: \(done) bytes read, encrypted and uploaded") }
                })
            try? await hub.postEvent(type: event.type, severity: event.severity, data: .object(event.data))
            guard event.type == "volume_snapshot_completed", let r = recorded.withLock({ $0 }) else {
                fail("\(event.data["reason"]?.stringValue ?? "failed"): \(event.data["message"]?.stringValue ?? "")")
            }
            print("snapshot: \(r.snapshotID) complete: \(r.size) bytes → \(r.objectKey) (\(r.objectSize) bytes, \(r.checksum)); recorded on the hub")
        }
    }
}
