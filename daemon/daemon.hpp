// mcwatchd's main loop: probe every server each interval, run each result
// through its health state machine, publish the state file, log transitions.
#pragma once

#include <csignal>
#include <memory>
#include <vector>

#include "config.hpp"
#include "health.hpp"
#include "prober.hpp"
#include "state_writer.hpp"

namespace mcwatch {

class Daemon {
public:
    explicit Daemon(Config config);

    // Takes the lock and publishes the first file. "" or a message.
    std::string start();
    // Rounds until a stop is requested. Returns the exit status.
    int run();

    // Set from signal handlers.
    static volatile std::sig_atomic_t stop_requested;
    static volatile std::sig_atomic_t reload_requested;

private:
    void round();
    void reload();
    // (Re)builds prober and health for config_, keeping the health of servers
    // whose address is still configured, and publishes a new file.
    std::string apply(std::vector<ServerHealth> kept);
    std::vector<state::ServerDynamic> views() const;

    Config config_;
    StateWriter writer_;
    std::unique_ptr<Prober> prober_;
    std::vector<ServerHealth> health_;
};

}  // namespace mcwatch
