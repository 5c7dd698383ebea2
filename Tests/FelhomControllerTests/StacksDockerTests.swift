import FelhomController
import FelhomCore
import Foundation
import Testing

/// Whether a Docker engine answers; `scripts/test` starts one (scripts/docker-engine) and sets
/// FELHOM_TEST_DOCKER=1, which turns a missing engine into a failure instead of a skip.
enum DockerAvailability {
    static let required = ProcessInfo.processInfo.environment["FELHOM_TEST_DOCKER"] == "1"
    static let available: Bool = {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["docker", "compose", "ls"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return false }
        p.waitUntilExit()
        if p.terminationStatus != 0 && !required {
            print("note: no Docker engine with Compose v2: controller suites skipped (scripts/docker-engine starts one)")
        }
        return p.terminationStatus == 0
    }()
    static var runSuites: Bool { available || required }
    static let image = ProcessInfo.processInfo.environment["FELHOM_TEST_IMAGE"] ?? "felhom/busybox:1"
}

/// A scratch stacks dir with compose projects named uniquely per test run (removed afterwards).
struct StackWorld {
    let dir = NSTemporaryDirectory() + "felhom-stacks-\(UUID().uuidString.prefix(8).lowercased())"
    let prefix = "t\(UUID().uuidString.prefix(6).lowercased())"

    /// A service that stops at once on SIGTERM (busybox sleep as PID 1 would wait for the grace period).
    static func service(_ name: String, command: String = "trap 'exit 0' TERM; sleep 3600 & wait") -> String {
        """
          \(name):
            image: \(DockerAvailability.image)
            command: ["sh", "-c", "\(command)"]
            stop_grace_period: 1s
        """
    }

    func write(_ stack: String, _ services: [String]) throws {
        try FileManager.default.createDirectory(atPath: dir + "/" + stack, withIntermediateDirectories: true)
        try ("services:\n" + services.joined(separator: "\n") + "\n").write(toFile: dir + "/\(stack)/compose.yaml", atomically: true, encoding: .utf8)
    }

    func name(_ s: String) -> String { prefix + "-" + s }

    /// Runs `body` with fresh stacks under a scratch dir, then removes every project and the dir.
    static func with(protected: [String], _ body: (StackWorld, Stacks) async throws -> Void) async throws {
        let w = StackWorld()
        try FileManager.default.createDirectory(atPath: w.dir, withIntermediateDirectories: true)
        let stacks = Stacks(
            directory: w.dir, protectedNames: protected.map { $0.replacingOccurrences(of: "{prefix}", with: w.prefix) }, runtime: DockerCompose())
        do {
            try await body(w, stacks)
        } catch {
            await w.cleanUp(stacks)
            throw error
        }
        await w.cleanUp(stacks)
    }

    func cleanUp(_ stacks: Stacks) async {
        for n in (try? stacks.names()) ?? [] {
            try? await DockerCompose().down(project: Stacks.projectName(folder: n) ?? n, file: stacks.composeFile(n))
        }
        try? FileManager.default.removeItem(atPath: dir)
    }
}

@Suite(.enabled(if: DockerAvailability.runSuites), .serialized) struct StacksDockerTests {
    @Test func listDeployStopStartRemoveOnARealEngine() async throws {
        try await StackWorld.with(protected: ["traefik"]) { w, stacks in try await listDeployStopStartRemove(w, stacks) }
    }

    func listDeployStopStartRemove(_ w: StackWorld, _ stacks: Stacks) async throws {
        let web = w.name("web")
        let pair = w.name("pair")
        let broken = w.name("broken")
        let infra = "traefik"
        try w.write(web, [StackWorld.service("app")])
        try w.write(pair, [StackWorld.service("web"), StackWorld.service("worker")])
        try w.write(broken, [StackWorld.service("job", command: "exit 3")])
        try w.write(infra, [StackWorld.service("proxy")])
        #expect(try stacks.names() == [pair, broken, web, infra].sorted())
        #expect(try await stacks.status(web).state == .notDeployed)

        for s in [web, pair, broken] { try await stacks.deploy(s) }
        try await Task.sleep(for: .seconds(1))
        let list = Dictionary(uniqueKeysWithValues: try await stacks.list().map { ($0.name, $0) })
        #expect(list[web]?.state == .running)
        #expect(list[pair]?.state == .running && list[pair]?.services.map(\.name) == ["web", "worker"])
        #expect(list[broken]?.state == .stopped, "a service that exits at once: \(String(describing: list[broken]))")
        #expect(list[infra]?.state == .notDeployed && list[infra]?.protected == true)
        // One `compose ls` call gives the same running set as a status per stack.
        #expect(try await stacks.runningNames() == [pair, web].sorted())

        try await stacks.stop(web)
        #expect(try await stacks.status(web).state == .stopped)
        try await stacks.start(web)
        #expect(try await stacks.status(web).state == .running)
        try await stacks.restart(pair)
        #expect(try await stacks.status(pair).state == .running)
        try await stacks.remove(web)
        #expect(try await stacks.status(web).state == .notDeployed)
        #expect(FileManager.default.fileExists(atPath: stacks.composeFile(web)), "remove keeps the folder")
    }

    /// The bulk-volume rule at deploy, on the real engine: a named volume labelled bulk (or looking
    /// like media) is refused naming the service and volume, and nothing is created; a bind mount
    /// and a media-looking volume labelled `felhom.bulk: "false"` deploy.
    @Test func aStackWithBulkDataInANamedVolumeIsRefusedBeforeAnythingStarts() async throws {
        try await StackWorld.with(protected: []) { w, stacks in
            let bad = w.name("photos")
            let good = w.name("gallery")
            try w.write(bad, [StackWorld.service("app") + "\n    volumes:\n      - photos:/photos"])
            try ("\nvolumes:\n  photos:\n    labels:\n      felhom.bulk: \"true\"\n").appendTo(w.dir + "/\(bad)/compose.yaml")
            do throws(ControllerError) {
                try await stacks.deploy(bad)
                Issue.record("deployed a bulk named volume")
            } catch {
                #expect(error.code == .invalidCompose, "\(error)")
                #expect(error.message.contains("service app: named volume 'photos'") && error.message.contains("labelled felhom.bulk"), "\(error)")
            }
            #expect(try await stacks.status(bad).state == .notDeployed, "nothing was created")
            let bind = NSTemporaryDirectory() + "felhom-bulk-\(UUID().uuidString.prefix(6))"
            try w.write(good, [StackWorld.service("app") + "\n    volumes:\n      - \(bind):/library\n      - thumbnails:/gallery-cache"])
            try ("\nvolumes:\n  thumbnails:\n    labels:\n      felhom.bulk: \"false\"\n").appendTo(w.dir + "/\(good)/compose.yaml")
            try await stacks.deploy(good)
            #expect(try await stacks.status(good).state != .notDeployed)
            try? FileManager.default.removeItem(atPath: bind)
        }
    }

    @Test func protectedUnknownAndMalformedStacksAreRefusedNamingThem() async throws {
        try await StackWorld.with(protected: ["{prefix}-infra"]) { w, stacks in try await refusals(w, stacks) }
    }

    func refusals(_ w: StackWorld, _ stacks: Stacks) async throws {
        let infra = w.name("infra")
        let bad = w.name("bad")
        try w.write(infra, [StackWorld.service("proxy")])
        try FileManager.default.createDirectory(atPath: w.dir + "/" + bad, withIntermediateDirectories: true)
        try "services:\n  x:\n    image: [unclosed\n".write(toFile: w.dir + "/\(bad)/compose.yaml", atomically: true, encoding: .utf8)
        try await stacks.deploy(infra)
        for op in ["stop", "remove"] {
            do {
                if op == "stop" { try await stacks.stop(infra) } else { try await stacks.remove(infra) }
                Issue.record("\(op) of a protected stack was not refused")
            } catch {
                #expect(error.code == .protectedStack && error.message.contains(infra), "\(error)")
            }
        }
        #expect(try await stacks.status(infra).state == .running, "still running")
        do {
            try await stacks.deploy("nosuchstack")
            Issue.record("unknown stack accepted")
        } catch { #expect(error.code == .unknownStack && error.message.contains("nosuchstack")) }
        do {
            try await stacks.deploy("../etc")
            Issue.record("a path accepted as a stack name")
        } catch { #expect(error.code == .unknownStack) }
        do {
            try await stacks.deploy(bad)
            Issue.record("malformed compose file deployed")
        } catch { #expect(error.code == .invalidCompose && error.message.contains(bad), "\(error)") }
        #expect(try await stacks.status(bad).state == .notDeployed, "nothing half-deployed")
    }
}

@Suite struct ComposeJSONTests {
    @Test func readsNDJSONArraysAndEmptyOutput() throws {
        let line1 = #"{"Command":"\"sleep 3600\"","ExitCode":0,"Health":"","Name":"p-web-1","Service":"web","State":"running","Labels":"a=b,c=d"}"#
        let line2 = #"{"ExitCode":3,"Health":"","Name":"p-job-1","Service":"job","State":"exited"}"#
        let ndjson = try ComposeJSON.containers(Array((line1 + "\n" + line2 + "\n").utf8))
        #expect(ndjson.map(\.service) == ["web", "job"] && ndjson[1].exitCode == 3)
        #expect(try ComposeJSON.containers(Array("[\(line1),\(line2)]".utf8)) == ndjson)
        #expect(try ComposeJSON.containers([]) == [])
        #expect(throws: ControllerError.self) { try ComposeJSON.containers(Array("NAME IMAGE\n".utf8)) }
    }

    @Test func readsComposeLsStatuses() throws {
        let out =
            #"[{"Name":"a","Status":"running(1)","ConfigFiles":"/x/a/compose.yaml"},{"Name":"b","Status":"exited(1), running(1)"},{"Name":"c","Status":"exited(2)"}]"#
        #expect(try ComposeJSON.projectStatuses(out) == ["a": "running(1)", "b": "exited(1), running(1)", "c": "exited(2)"])
        #expect(try ComposeJSON.projectStatuses("[]") == [:])
        #expect(throws: ControllerError.self) { try ComposeJSON.projectStatuses("NAME STATUS") }
    }

    @Test func projectNamesAreNormalizedLikeCompose() {
        #expect(Stacks.projectName(folder: "Nextcloud") == "nextcloud")
        #expect(Stacks.projectName(folder: "my app.v2") == "myappv2")
        #expect(Stacks.projectName(folder: "_x") == "x")
        #expect(Stacks.projectName(folder: "...") == nil)
    }
}

extension String {
    /// Appends this text to the file at `path`.
    func appendTo(_ path: String) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(utf8))
        try handle.close()
    }
}
