import FelhomCore
import Foundation
import PVESimulator

/// Calls the simulator engine directly (no network): for checks of the wire shape itself.
struct EngineHarness {
    let engine: PVESimEngine
    let state: SimState
    let clock: ManualClock

    init(taskSeconds: Double = 1, _ adjust: (inout SimState) -> Void = { _ in }) {
        clock = ManualClock()
        var s = SimSeed.defaultState(now: clock.now())
        s.settings.taskDurations = ["default": taskSeconds]
        adjust(&s)
        state = s
        engine = PVESimEngine(state: s, clock: clock)
    }

    func secret(_ tokenID: String) -> String { state.tokens.first { $0.tokenid == tokenID }?.secret ?? "" }

    struct Answer {
        var status: Int
        var reason: String
        var json: JSONValue?
        var text: String
        var data: JSONValue? { json?["data"] }
    }

    func call(
        _ method: String, _ path: String, token: String? = SimSeed.agentTokenID, query: String = "", form: String? = nil,
        json: String? = nil, rawAuth: String? = nil
    ) async -> Answer {
        var headers: [(String, String)] = []
        if let rawAuth {
            headers.append(("Authorization", rawAuth))
        } else if let token {
            headers.append(("Authorization", "PVEAPIToken=\(token)=\(secret(token))"))
        }
        var body: [UInt8] = []
        if let form {
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
            body = Array(form.utf8)
        } else if let json {
            headers.append(("Content-Type", "application/json"))
            body = Array(json.utf8)
        }
        let r = await engine.handle(SimRequest(method: method, path: "/api2/json" + path, query: query, headers: headers, body: body))
        let text = String(decoding: r.body, as: UTF8.self)
        return Answer(status: r.status, reason: r.reason, json: try? JSONValue.parse(Data(r.body)), text: text)
    }
}
