import FelhomController
import FelhomCore
import FelhomTestSupport
import Foundation
import Synchronization
import Testing

/// A probe whose answers the test sets: path → identity (nil: nothing mounted).
final class FakeProbe: StorageProbe, Sendable {
    let mounts = Mutex<[String: String]>([:])
    func mountIdentity(_ path: String) async -> String? { mounts.withLock { $0[path] } }
}

@discardableResult
func sh(_ command: String) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let out = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: out, as: UTF8.self))
}

@Suite struct StorageTests {
    @Test func findmntJSONGivesTheUUIDOrTheSource() {
        #expect(FindmntProbe.identity(findmntJSON: #"{"filesystems":[{"uuid":"73f3-…","source":"/dev/loop0","fstype":"ext4"}]}"#) == "73f3-…")
        #expect(FindmntProbe.identity(findmntJSON: #"{"filesystems":[{"uuid":null,"source":"tmpfs","fstype":"tmpfs"}]}"#) == "tmpfs (tmpfs)")
        #expect(FindmntProbe.identity(findmntJSON: "") == nil)
    }

    @Test func aVanishedDiskStopsItsStacksAndTheSameDiskStartsExactlyThoseAgain() async throws {
        let w = try QuiesceWorld(["photos", "vault", "other", "traefik"])
        let compose = FakeCompose(running: ["photos": true, "vault": false, "other": true, "traefik": true])
        compose.state.withLock {
            $0.binds = ["photos": ["/mnt/disk1/photos"], "vault": ["/mnt/disk1/vault"], "other": ["/srv/x"], "traefik": ["/mnt/disk1/certs"]]
        }
        var s = ControllerSettings()
        s.storagePaths = [.init(path: "/mnt/disk1", label: "USB disk")]
        try s.save(stateDir: w.stateDir)
        let probe = FakeProbe()
        probe.mounts.withLock { $0["/mnt/disk1"] = "uuid-1" }
        let events = Mutex<[String]>([])
        let dog = Watchdog(
            stacks: Stacks(directory: w.stacksDir, protectedNames: ["traefik"], runtime: compose), stateDir: w.stateDir, probe: probe,
            event: { type, data in events.withLock { $0.append("\(type) \(data["stacks"] ?? "")") } })
        _ = try await dog.pass()
        #expect(try ControllerSettings.load(stateDir: w.stateDir).storagePaths[0].filesystemUUID == "uuid-1", "first sight remembered")

        probe.mounts.withLock { $0["/mnt/disk1"] = nil }
        _ = try await dog.pass()
        var saved = try ControllerSettings.load(stateDir: w.stateDir)
        #expect(saved.stoppedByDisconnect["/mnt/disk1"] == ["photos", "vault"], "vault was stopped already but uses the disk too")
        #expect(saved.storagePaths[0].disconnectedAt != nil)
        #expect(!compose.isRunning("photos") && compose.isRunning("other") && compose.isRunning("traefik"), "protected left running")
        // The watchdog does not start them while the disk is away.
        #expect(try await dog.pass()["photos"] == nil)

        probe.mounts.withLock { $0["/mnt/disk1"] = "uuid-OTHER" }
        _ = try await dog.pass()
        #expect(!compose.isRunning("photos"), "a different disk is not trusted")

        probe.mounts.withLock { $0["/mnt/disk1"] = "uuid-1" }
        _ = try await dog.pass()
        saved = try ControllerSettings.load(stateDir: w.stateDir)
        #expect(compose.isRunning("photos") && compose.isRunning("vault"))
        #expect(saved.stoppedByDisconnect.isEmpty && saved.storagePaths[0].disconnectedAt == nil)
        #expect(events.withLock { $0 } == ["storage_disconnected photos,vault", "storage_reconnected photos,vault"])
    }
}

/// The same on a real engine with a real loop-mounted ext4 disk (root, util-linux, e2fsprogs).
@Suite(.enabled(if: DockerAvailability.runSuites && getuid() == 0), .serialized) struct StorageDockerTests {
    @Test func unmountingADiskStopsItsStacksAndRemountingTheSameDiskStartsThem() async throws {
        try await StackWorld.with(protected: []) { w, stacks in
            let disk = w.dir + "-disk.img"
            let other = w.dir + "-other.img"
            let mount = w.dir + "-mnt"
            for image in [disk, other] {
                #expect(try sh("truncate -s 16M '\(image)' && mkfs.ext4 -q -F '\(image)'").0 == 0)
            }
            try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
            #expect(try sh("mount -o loop '\(disk)' '\(mount)' && mkdir -p '\(mount)/data'").0 == 0)
            defer { _ = try? sh("umount -l '\(mount)' 2>/dev/null; rm -f '\(disk)' '\(other)'; rmdir '\(mount)'") }
            let uses = w.name("uses")
            let free = w.name("free")
            try w.write(uses, [StackWorld.service("app") + "\n    volumes: [\"\(mount)/data:/data\"]"])
            try w.write(free, [StackWorld.service("app")])
            for s in [uses, free] { try await stacks.deploy(s) }
            let stateDir = w.dir + "-state"
            var s = ControllerSettings()
            s.storagePaths = [.init(path: mount, label: "data disk")]
            try s.save(stateDir: stateDir)
            let dog = Watchdog(stacks: stacks, stateDir: stateDir)
            _ = try await dog.pass()
            let uuid = try ControllerSettings.load(stateDir: stateDir).storagePaths[0].filesystemUUID
            #expect(uuid?.count == 36, "the ext4 UUID: \(uuid ?? "none")")

            #expect(try sh("umount -l '\(mount)'").0 == 0)
            _ = try await dog.pass()
            #expect(try await stacks.status(uses).state == .stopped)
            #expect(try await stacks.status(free).state == .running)
            #expect(try ControllerSettings.load(stateDir: stateDir).stoppedByDisconnect[mount] == [uses])

            #expect(try sh("mount -o loop '\(other)' '\(mount)'").0 == 0)
            _ = try await dog.pass()
            #expect(try await stacks.status(uses).state == .stopped, "another disk at the same path is not trusted")
            #expect(try sh("umount -l '\(mount)' && mount -o loop '\(disk)' '\(mount)'").0 == 0)
            _ = try await dog.pass()
            #expect(try await stacks.status(uses).state == .running)
            #expect(try ControllerSettings.load(stateDir: stateDir).stoppedByDisconnect.isEmpty)
        }
    }
}

/// The bulk-volume rule's reading of `docker compose config --format json` (captured from Compose
/// 2.40 on this machine's engine).
@Suite struct ComposeBulkRuleTests {
    static let config = """
        {"name":"ct","services":{"app":{"image":"felhom/busybox:1","volumes":[
          {"type":"volume","source":"photos","target":"/photos","volume":{}},
          {"type":"volume","source":"cache","target":"/cache","volume":{}},
          {"type":"volume","source":"db","target":"/var/lib/movies-index","volume":{}},
          {"type":"volume","source":"thumbs","target":"/upload-thumbs","volume":{}},
          {"type":"bind","source":"/srv/media/library","target":"/library","bind":{"create_host_path":true}}]}},
         "volumes":{"cache":{"name":"ct_cache"},"db":{"name":"ct_db"},
          "photos":{"name":"ct_photos","labels":{"felhom.bulk":"true"}},
          "thumbs":{"name":"ct_thumbs","labels":{"felhom.bulk":"false"}}}}
        """

    @Test func namedVolumesLabelledBulkOrLookingLikeMediaAreFound() throws {
        let found = try ComposeJSON.bulkViolations(Self.config)
        #expect(found.count == 2, "\(found)")
        #expect(found[0].contains("named volume 'photos' (/photos) is labelled felhom.bulk"))
        #expect(found[1].contains("named volume 'db' (/var/lib/movies-index) looks like media"))
        #expect(found.allSatisfy { $0.contains("bind-mount a folder of a bulk storage path") })
        #expect(try ComposeJSON.bulkViolations(#"{"services":{}}"#).isEmpty)
        #expect(throws: ControllerError.self) { try ComposeJSON.bulkViolations("not json") }
    }
}
