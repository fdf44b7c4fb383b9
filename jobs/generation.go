package jobs

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// MaxGenTokens bounds max_tokens: more than any context length star
// supports, small enough that no count derived from it overflows.
const MaxGenTokens = 1 << 24

// SettingError is a generation setting out of its range. The command line
// and batch records check settings with the same rules (CheckMaxTokens,
// CheckTemperature, CheckTopP) and name the setting their own way.
type SettingError struct {
	Field string // as a record names it: "max_tokens", "temperature", "top_p"
	Value string // the value as read
	Rule  string // what it must be
}

// Error names the setting as a record field.
func (e *SettingError) Error() string {
	return fmt.Sprintf("%q = %s: %s", e.Field, e.Value, e.Rule)
}

// Flag names the setting as a command-line flag.
func (e *SettingError) Flag() string {
	return fmt.Sprintf("--%s %s: %s", strings.ReplaceAll(e.Field, "_", "-"), e.Value, e.Rule)
}

func settingErr(field string, v float64, rule string) *SettingError {
	f := byte('g')
	if v == math.Trunc(v) && math.Abs(v) < 1e21 {
		f = 'f' // whole numbers as written: 100000000, not 1e+08
	}
	return &SettingError{Field: field, Value: strconv.FormatFloat(v, f, -1, 64), Rule: rule}
}

// CheckMaxTokens accepts a whole number of tokens in [0, MaxGenTokens].
// v is a float so that record values (JSON numbers) are checked before
// conversion.
func CheckMaxTokens(v float64) *SettingError {
	if !(v >= 0 && v <= MaxGenTokens) || v != math.Trunc(v) {
		return settingErr("max_tokens", v, fmt.Sprintf("must be a whole number of tokens from 0 to %d", MaxGenTokens))
	}
	return nil
}

// CheckTemperature accepts a finite temperature >= 0 (0, or -0, is
// greedy). NaN would turn every probability into NaN and Inf make them
// all equal; neither is a temperature.
func CheckTemperature(v float64) *SettingError {
	if !(v >= 0) || math.IsInf(v, 0) {
		return settingErr("temperature", v, "must be a finite number >= 0 (0: greedy)")
	}
	return nil
}

// CheckTopP accepts a nucleus mass in (0, 1].
func CheckTopP(v float64) *SettingError {
	if !(v > 0 && v <= 1) {
		return settingErr("top_p", v, "must be a number in (0, 1] (1: no nucleus cut)")
	}
	return nil
}

// CheckGeneration checks the generation settings of s (the first one out
// of range, or nil).
func CheckGeneration(s Settings) *SettingError {
	if err := CheckMaxTokens(float64(s.MaxTokens)); err != nil {
		return err
	}
	if err := CheckTemperature(s.Temperature); err != nil {
		return err
	}
	return CheckTopP(s.TopP)
}
