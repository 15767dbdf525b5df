// mcwatchd's log: one `key=value` line per event on stderr, so that people
// grep it and tests assert on it. Values with spaces or quotes are quoted.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace mcwatch {

using LogField = std::pair<std::string_view, std::string_view>;

// ts=<RFC 3339 UTC> level=<level> event=<event> <fields...>
void log_event(std::string_view level, std::string_view event, std::initializer_list<LogField> fields = {});

// `value` as it appears after `key=`: bare when safe, otherwise quoted.
std::string log_value(std::string_view value);

}  // namespace mcwatch
