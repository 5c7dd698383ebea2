import FelhomAPI
import FelhomController
import FelhomCore
import FelhomHubClient
import FelhomTestSupport
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

func bundleView(_ name: String, _ file: String?, version: Int64 = 1) -> SecretBundleView {
    SecretBundleView(bundle: name, version: version, createdAt: Timestamp(secondsSince1970: 1_796_000_000), file: file)
}

func trc(_ pairs: [(String, String)]) -> String {
    Data((["# TRC_SECRETS_V1"] + pairs.map { "\($0.0)=\($0.1)" }).joined(separator: "\n").utf8 + [0x0A]).base64EncodedString()
}

func fileStat(_ path: String) -> stat? {
    var st = stat()
    return lstat(path, &st) == 0 ? st : nil
}

@Suite struct SecretsWriterTests {
    let dir = NSTemporaryDirectory() + "felhom-secrets-\(UUID().uuidString)"

    @Test func writesRootOwned0400AndSaysWhenNothingChanged() throws {
        let writer = SecretsWriter(directory: dir)
        let bytes = Array("# TRC_SECRETS_V1\nDB=  spaced  \n".utf8)
        #expect(try writer.write(bundle: "platform", bytes: bytes))
        let st = try #require(fileStat(dir + "/platform.env"))
        #expect(st.st_mode & 0o7777 == 0o400 && st.st_uid == geteuid())
        #expect(writer.current("platform") == bytes)
        #expect(try writer.write(bundle: "platform", bytes: bytes) == false, "same bytes, mode and owner: nothing written")
        // No temporary file is left next to it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["platform.env"])
    }

    @Test func aGroupOptInMakesIt0440WithThatGroup() throws {
        let writer = SecretsWriter(directory: dir)
        let gid = try SecretsWriter.groupID("daemon")
        try writer.write(bundle: "app", bytes: Array("# TRC_SECRETS_V1\nK=v\n".utf8), group: gid)
        let st = try #require(fileStat(dir + "/app.env"))
        #expect(st.st_mode & 0o7777 == 0o440 && st.st_gid == gid)
        // Back to 0400 root:root without the group, same bytes: rewritten because mode and group differ.
        #expect(try writer.write(bundle: "app", bytes: Array("# TRC_SECRETS_V1\nK=v\n".utf8)))
        let after = try #require(fileStat(dir + "/app.env"))
        #expect(after.st_mode & 0o7777 == 0o400 && after.st_gid == getegid())
        #expect(throws: ControllerError.self) { try SecretsWriter.groupID("no-such-group-felhom") }
    }

    @Test func hostileNamesAndBadFilesAreRefusedAndTheOldFileKept() throws {
        let writer = SecretsWriter(directory: dir)
        let good = Array("# TRC_SECRETS_V1\nK=old\n".utf8)
        try writer.write(bundle: "platform", bytes: good)
        for name in ["../etc/passwd", "", "UPPER", "a/b", String(repeating: "x", count: 65), "dot.env"] {
            #expect(throws: ControllerError.self, "\(name)") { try writer.write(bundle: name, bytes: good) }
        }
        for bad in ["K=no header\n", "# TRC_SECRETS_V1\nlower=x\n", "# TRC_SECRETS_V1\nK=a\nK=b\n", "# TRC_SECRETS_V1\nK=base64:!!!\n"] {
            do {
                try writer.write(bundle: "platform", bytes: Array(bad.utf8))
                Issue.record("accepted \(bad)")
            } catch {
                #expect(error.code == .secrets && error.message.contains("platform") && error.message.contains("line"), "\(error)")
            }
        }
        #expect(writer.current("platform") == good)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["platform.env"])
    }

    @Test func aDirectoryWhereTheFileBelongsIsNamed() throws {
        try FileManager.default.createDirectory(atPath: dir + "/platform.env", withIntermediateDirectories: true)
        do {
            try SecretsWriter(directory: dir).write(bundle: "platform", bytes: Array("# TRC_SECRETS_V1\nK=v\n".utf8))
            Issue.record("wrote over a directory")
        } catch { #expect(error.message.contains("is a directory")) }
    }
}

@Suite struct SecretsSyncTests {
    func world(_ binds: [String: [String]], running: [String: Bool]) throws -> (QuiesceWorld, FakeCompose, SecretsSync, EventLog) {
        let w = try QuiesceWorld(["a", "b", "c", "traefik"])
        let compose = FakeCompose(running: running)
        compose.state.withLock { $0.binds = binds }
        let events = EventLog()
        let sync = SecretsSync(
            stacks: Stacks(directory: w.stacksDir, protectedNames: ["traefik"], runtime: compose),
            writer: SecretsWriter(directory: w.dir + "/secrets"), stateDir: w.stateDir, healthTimeout: .milliseconds(300),
            event: { type, data in events.items.withLock { $0.append("\(type) \(data["stack"] ?? "")") } })
        return (w, compose, sync, events)
    }

    @Test func aNewBundleIsWrittenWithoutRestartsAndARotationRestartsItsUsersInOrder() async throws {
        let (w, compose, sync, _) = try world([:], running: ["a": true, "b": true, "c": true, "traefik": true])
        let file = w.dir + "/secrets/platform.env"
        compose.state.withLock { $0.binds = ["b": [file], "a": [w.dir + "/secrets"], "traefik": [file], "c": ["/srv/data"]] }
        let first = try await sync.apply([bundleView("platform", trc([("K", "one")]))])
        #expect(first.written == ["platform"] && first.restarted.isEmpty && compose.log.isEmpty)
        // Same bytes again: nothing.
        #expect(try await sync.apply([bundleView("platform", trc([("K", "one")]))]).written.isEmpty)
        let second = try await sync.apply([bundleView("platform", trc([("K", "two")]), version: 2)])
        #expect(
            second.written == ["platform"] && second.restarted == ["a", "b", "traefik"], "users by bind mount (file or its directory); c is not one")
        #expect(compose.log == ["restart a", "restart b", "restart traefik"])
        #expect(!FileManager.default.fileExists(atPath: w.stateDir + "/secrets-rollout.json"))
    }

    @Test func aStoppedUserIsNotStartedByARotation() async throws {
        let (w, compose, sync, _) = try world([:], running: ["a": false, "b": true])
        let file = w.dir + "/secrets/platform.env"
        compose.state.withLock { $0.binds = ["a": [file], "b": [file]] }
        _ = try await sync.apply([bundleView("platform", trc([("K", "one")]))])
        let out = try await sync.apply([bundleView("platform", trc([("K", "two")]))])
        #expect(out.restarted == ["b"] && compose.log == ["restart b"])
    }

    @Test func aCrashMidRolloutGoesOnAtTheNextStart() async throws {
        let (w, compose, sync, _) = try world([:], running: ["a": true, "b": true, "c": true])
        try FileManager.default.createDirectory(atPath: w.stateDir, withIntermediateDirectories: true)
        try Data(#"{"stacks":["b","c"],"bundles":["platform"]}"#.utf8).write(to: URL(fileURLWithPath: w.stateDir + "/secrets-rollout.json"))
        #expect(try await sync.resume() == ["b", "c"])
        #expect(compose.log == ["restart b", "restart c"])
        #expect(try await sync.resume().isEmpty, "done once")
    }

    @Test func aStackThatDoesNotComeBackStopsTheRollout() async throws {
        let (w, compose, sync, events) = try world([:], running: ["a": true, "b": true, "c": true])
        let file = w.dir + "/secrets/platform.env"
        compose.state.withLock { $0.binds = ["a": [file], "b": [file], "c": [file]] }
        _ = try await sync.apply([bundleView("platform", trc([("K", "one")]))])
        // b will not run after its restart.
        compose.state.withLock { s in s.onStop = nil }
        let restartHook = FakeComposeRestartBreaker(compose: compose, breaks: "b")
        let out = try await SecretsSync(
            stacks: Stacks(directory: w.stacksDir, runtime: restartHook), writer: SecretsWriter(directory: w.dir + "/secrets"),
            stateDir: w.stateDir, healthTimeout: .milliseconds(300),
            event: { type, data in events.items.withLock { $0.append("\(type) \(data["stack"] ?? "") \(data["not_restarted"] ?? "")") } }
        ).apply([bundleView("platform", trc([("K", "two")]))])
        #expect(out.restarted == ["a"] && out.failed == "b")
        #expect(compose.log == ["restart a", "restart b"], "c keeps running on the old values")
        #expect(events.items.withLock { $0 } == ["secrets_rollout_failed b c"])
    }

    @Test func hostileBundlesAreRefusedOneByOne() async throws {
        let (w, _, sync, _) = try world([:], running: [:])
        let out = try await sync.apply([
            bundleView("../../etc/cron.d/x", trc([("K", "v")])), bundleView("nobytes", nil), bundleView("notbase64", "%%%"),
            bundleView("badfile", Data("K=no header\n".utf8).base64EncodedString()), bundleView("good", trc([("K", "v")])),
        ])
        #expect(out.written == ["good"])
        #expect(Set(out.refused.keys) == ["../../etc/cron.d/x", "nobytes", "notbase64", "badfile"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: w.dir + "/secrets") == ["good.env"])
    }

    @Test func usersAskingDifferentGroupsAreRefused() async throws {
        let (w, compose, sync, _) = try world([:], running: ["a": true, "b": true])
        let file = w.dir + "/secrets/platform.env"
        compose.state.withLock { $0.binds = ["a": [file], "b": [file]] }
        var settings = ControllerSettings()
        settings.secretsGroups = ["a": "daemon", "b": "bin"]
        try settings.save(stateDir: w.stateDir)
        let out = try await sync.apply([bundleView("platform", trc([("K", "v")]))])
        #expect(out.refused["platform"]?.contains("different groups") == true && out.written.isEmpty)
        settings.secretsGroups = ["a": "daemon"]
        try settings.save(stateDir: w.stateDir)
        #expect(try await sync.apply([bundleView("platform", trc([("K", "v")]))]).written == ["platform"])
        #expect(fileStat(file).map { $0.st_mode & 0o7777 } == 0o440)
    }
}

final class EventLog: Sendable {
    let items = Mutex<[String]>([])
}

/// A compose runtime whose restart of one project leaves it stopped (for the failed-rollout case).
final class FakeComposeRestartBreaker: ComposeRuntime, Sendable {
    let compose: FakeCompose
    let breaks: String
    init(compose: FakeCompose, breaks: String) {
        self.compose = compose
        self.breaks = breaks
    }
    func containers(project: String) async throws(ControllerError) -> [ComposeContainer] { try await compose.containers(project: project) }
    func validate(project: String, file: String) async throws(ControllerError) {}
    func up(project: String, file: String) async throws(ControllerError) { try await compose.up(project: project, file: file) }
    func start(project: String, file: String) async throws(ControllerError) { try await compose.start(project: project, file: file) }
    func stop(project: String, file: String) async throws(ControllerError) { try await compose.stop(project: project, file: file) }
    func restart(project: String, file: String) async throws(ControllerError) {
        try await compose.restart(project: project, file: file)
        if project == breaks { compose.state.withLock { $0.running[project] = false } }
    }
    func down(project: String, file: String) async throws(ControllerError) { try await compose.down(project: project, file: file) }
    func bindSources(project: String, file: String) async throws(ControllerError) -> [String] {
        try await compose.bindSources(project: project, file: file)
    }
}

/// A container's start and stop times and its first passed health check, from `docker inspect`.
struct ContainerTimes {
    var startedAt: Double
    var finishedAt: Double
    var firstHealthy: Double?

    /// RFC 3339 with up to nanoseconds (Docker's format) → seconds since 1970.
    static func seconds(_ text: String) -> Double {
        let parts = text.split(separator: ".", maxSplits: 1)
        let base = ISO8601DateFormatter().date(from: String(parts[0]) + "Z")?.timeIntervalSince1970 ?? 0
        let fraction = parts.count > 1 ? Double("0." + parts[1].prefix { $0.isNumber }) ?? 0 : 0
        return base + fraction
    }

    static func of(_ container: String) throws -> ContainerTimes {
        let (rc, out) = try sh("docker inspect --format '{{json .State}}' \(container)")
        guard rc == 0, let state = try? JSONValue.parse(Data(out.utf8)) else { throw ControllerError(.runtime, "inspect \(container): \(out)") }
        let started = seconds(state["StartedAt"]?.stringValue ?? "")
        // The health log keeps checks from before the last start too: the first passed one since.
        let healthy = (state["Health"]?["Log"]?.arrayValue ?? []).filter { $0["ExitCode"] == .int(0) }.compactMap { $0["End"]?.stringValue }
            .map(seconds).filter { $0 >= started }.min()
        return ContainerTimes(startedAt: started, finishedAt: seconds(state["FinishedAt"]?.stringValue ?? ""), firstHealthy: healthy)
    }
}

@Suite(.enabled(if: DockerAvailability.runSuites), .serialized) struct SecretsRotationDockerTests {
    static let secretsKey = Data((0..<32).map { UInt8($0 * 5 & 0xFF) }).base64EncodedString()

    /// The whole path on real peers: the operator uploads a bundle to a real hub, the controller
    /// fetches it with the guest key, writes the file (0400 root), the stacks bind-mount it; a new
    /// version restarts exactly the stacks using it, one at a time — the second is stopped only
    /// after the first is running and has passed its health check — and they see the new bytes.
    @Test func aRotationRestartsTheUsersOneAtATimeOnARealEngine() async throws {
        try await StackWorld.with(protected: []) { w, stacks in
            let secretsDir = w.dir + "-secrets"
            defer { try? FileManager.default.removeItem(atPath: secretsDir) }
            let mount = "    volumes: [\"\(secretsDir)/platform.env:/run/secrets/platform.env:ro\"]"
            let health = "    healthcheck: {test: [\"CMD\", \"test\", \"-s\", \"/run/secrets/platform.env\"], interval: 1s, timeout: 1s, retries: 3}"
            try w.write(w.name("app1"), [StackWorld.service("app") + "\n" + mount + "\n" + health])
            try w.write(w.name("app2"), [StackWorld.service("app") + "\n" + mount])
            try w.write(w.name("other"), [StackWorld.service("app")])
            try await withRunningHub(
                adjust: { $0.secretsKey = Secret(Self.secretsKey) },
                { hub in
                    let op = try HubClient(url: hub.url, key: Secret(operatorKey))
                    let customer = try await op.createCustomer(NewCustomer(name: "A", email: "a@example.hu", domain: "a.example.hu"))
                    let host = try await op.createHost(customerID: customer, name: "box")
                    let guest = try await op.createGuest(hostID: host.id, name: "apps", idempotencyKey: nil)
                    let asGuest = try HubClient(url: hub.url, key: guest.apiKey)
                    func upload(_ value: String) async throws {
                        _ = try await op.send(
                            "PUT", "/api/v1/guests/\(guest.id)/secrets/platform",
                            body: SecretBundleUpload(secrets: ["DB_PASSWORD": .text(value)]), as: SecretBundleView.self)
                    }
                    let sync = SecretsSync(stacks: stacks, writer: SecretsWriter(directory: secretsDir), stateDir: w.dir + "/.state")
                    try await upload("  first value ")
                    let first = try await sync.apply(try await asGuest.secretBundles(guestID: guest.id))
                    #expect(first.written == ["platform"] && first.restarted.isEmpty)
                    let st = try #require(fileStat(secretsDir + "/platform.env"))
                    #expect(st.st_mode & 0o7777 == 0o400 && st.st_uid == 0 && st.st_gid == 0, "root-owned 0400")
                    for s in ["app1", "app2", "other"] { try await stacks.deploy(w.name(s)) }
                    let c1 = "\(w.name("app1"))-app-1"
                    let c2 = "\(w.name("app2"))-app-1"
                    let c3 = "\(w.name("other"))-app-1"
                    let otherBefore = try ContainerTimes.of(c3)
                    try await upload("second\nvalue")
                    let second = try await sync.apply(try await asGuest.secretBundles(guestID: guest.id))
                    #expect(second.written == ["platform"] && second.restarted == [w.name("app1"), w.name("app2")] && second.failed == nil)
                    let t1 = try ContainerTimes.of(c1)
                    let t2 = try ContainerTimes.of(c2)
                    let healthy1 = try #require(t1.firstHealthy, "app1 passed a health check after its restart")
                    #expect(healthy1 >= t1.startedAt)
                    #expect(t2.finishedAt >= healthy1, "app2 was stopped only after app1 ran and was healthy: \(t2.finishedAt) vs \(healthy1)")
                    #expect(try ContainerTimes.of(c3).startedAt == otherBefore.startedAt, "a stack not using the bundle is left alone")
                    let (_, seen) = try sh("docker exec \(c2) cat /run/secrets/platform.env")
                    #expect(seen == "# TRC_SECRETS_V1\nDB_PASSWORD=base64:\(Data("second\nvalue".utf8).base64EncodedString())\n")
                }
            )
        }
    }
}
