import FelhomController
import FelhomCore
import FelhomTestSupport
import Foundation
import Synchronization
import Testing

@Suite struct WatchdogTests {
    @Test func startsWhatStoppedLeavesWhatWasStoppedOnPurposeOrIsQuiescing() async throws {
        let w = try QuiesceWorld(["a", "b", "c", "d", "traefik"])
        let compose = FakeCompose(running: ["a": false, "b": false, "c": false, "traefik": true])  // d never deployed
        var saved = ControllerSettings()
        saved.stoppedStacks = ["b"]
        try saved.save(stateDir: w.stateDir)
        try QuiesceMarker(startedAt: Date(), stacks: ["c"]).write(stateDir: w.stateDir)
        let dog = Watchdog(stacks: Stacks(directory: w.stacksDir, protectedNames: ["traefik"], runtime: compose), stateDir: w.stateDir)
        #expect(try await dog.pass() == ["a": .started])
        #expect(dog.restarts.of("a") == 1 && dog.restarts.of("b") == 0, "counted for the report's restarts")
        #expect(compose.isRunning("a") && !compose.isRunning("b") && !compose.isRunning("c"))
        #expect(compose.log == ["start a"], "d is not deployed: left alone")
    }

    @Test func backsOffAndSaysSoOnceAfterRepeatedFailures() async throws {
        let w = try QuiesceWorld(["a"])
        let compose = FakeCompose(running: ["a": false])
        compose.state.withLock { $0.failStart = ["a"] }
        let events = Mutex<[String]>([])
        let dog = Watchdog(
            stacks: Stacks(directory: w.stacksDir, protectedNames: [], runtime: compose), stateDir: w.stateDir,
            settings: .init(interval: .milliseconds(1), failuresBeforeEvent: 3, maxBackoff: .milliseconds(4)),
            event: { type, data in events.withLock { $0.append("\(type) \(data["stack"] ?? "") \(data["count"] ?? "")") } })
        guard case .startFailed = try await dog.pass()["a"] else {
            Issue.record("first failure")
            return
        }
        // Backoff: not retried at once (shown with a long interval, so a slow machine cannot pass it).
        let patient = Watchdog(
            stacks: Stacks(directory: w.stacksDir, protectedNames: [], runtime: compose), stateDir: w.stateDir,
            settings: .init(interval: .seconds(60), failuresBeforeEvent: 3, maxBackoff: .seconds(600)))
        guard case .startFailed = try await patient.pass()["a"] else {
            Issue.record("first failure (patient)")
            return
        }
        #expect(try await patient.pass()["a"] == .waiting, "backoff: not retried at once")
        for _ in 0..<6 {
            try await Task.sleep(for: .milliseconds(10))
            _ = try await dog.pass()
        }
        #expect(events.withLock { $0 } == ["stack_restart_failed a 3"], "one event, at the third failure")
        // It starts again: the streak ends, the stack runs.
        compose.state.withLock { $0.failStart = [] }
        try await Task.sleep(for: .milliseconds(10))
        #expect(try await dog.pass()["a"] == .started)
    }
}

@Suite(.enabled(if: DockerAvailability.runSuites), .serialized) struct WatchdogDockerTests {
    @Test func aKilledContainerIsStartedAgain() async throws {
        try await StackWorld.with(protected: []) { w, stacks in
            let app = w.name("app")
            try w.write(app, [StackWorld.service("web")])
            try await stacks.deploy(app)
            let kill = Process()
            kill.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            kill.arguments = ["docker", "kill", "\(Stacks.projectName(folder: app) ?? app)-web-1"]
            kill.standardOutput = FileHandle.nullDevice
            try kill.run()
            kill.waitUntilExit()
            #expect(kill.terminationStatus == 0)
            #expect(try await stacks.status(app).state == .stopped)
            let dog = Watchdog(stacks: stacks, stateDir: w.dir + "-state")
            #expect(try await dog.pass()[app] == .started)
            #expect(try await stacks.status(app).state == .running)
        }
    }
}
