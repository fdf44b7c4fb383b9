package slurm

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// Limits and rules that sbatch and slurmctld apply, checked here so that a
// bad option fails before anything is submitted. Measured against Slurm
// 22.05.8 (Debian 12) on the test cluster in cluster/, and read from
// Slurm's source where named.
const (
	// maxNameLen: slurmctld refuses a job name, account or partition
	// longer than 1024 bytes with "Pathname of a file, directory or other
	// parameter too long" (measured: 1024 accepted, 1025 refused).
	maxNameLen = 1024
	// maxSignalTime: sbatch(1) --signal: "sig_time must have an integer
	// value between 0 and 65535".
	maxSignalTime = 65535
)

// directiveValue checks a value that goes on an #SBATCH line. sbatch
// splits those lines into arguments itself (src/sbatch/opt.c,
// _get_argument): whitespace ends an argument, an unescaped '#' starts a
// comment that drops the rest of the line, single and double quotes group
// and are removed, and a backslash escapes the next character. A value
// holding any of those would reach sbatch changed or cut, and a control
// character (a newline above all) would end the line; none is allowed.
func directiveValue(what, v string) error {
	if len(v) > maxNameLen {
		return fmt.Errorf("%s is %d bytes long; Slurm takes at most %d", what, len(v), maxNameLen)
	}
	for _, r := range v {
		switch {
		case unicode.IsSpace(r):
			return fmt.Errorf("%s %q contains whitespace; sbatch splits #SBATCH lines at whitespace", what, v)
		case r == '#':
			return fmt.Errorf("%s %q contains '#'; sbatch reads the rest of an #SBATCH line after '#' as a comment", what, v)
		case r == '"' || r == '\'' || r == '\\':
			return fmt.Errorf("%s %q contains %q; sbatch treats quotes and backslashes on #SBATCH lines as quoting", what, v, r)
		case unicode.IsControl(r):
			return fmt.Errorf("%s %q contains a control character", what, v)
		}
	}
	return nil
}

// checkJobName: beyond the #SBATCH rules, no comma. sbatch itself takes
// "a,b" as a name, but squeue --name, scancel --name and sacct --name take
// comma-separated lists, so such a job cannot be selected by its name.
func checkJobName(v string) error {
	if err := directiveValue("job name", v); err != nil {
		return err
	}
	if strings.Contains(v, ",") {
		return fmt.Errorf("job name %q contains ','; squeue/scancel --name read a comma-separated list, so the job could not be found by name", v)
	}
	return nil
}

// checkPartition: sbatch -p takes "a comma separated list" of partitions
// (sbatch(1)); each must be non-empty. Whether a partition exists only the
// cluster knows (sbatch: "invalid partition specified").
func checkPartition(v string) error {
	if err := directiveValue("partition", v); err != nil {
		return err
	}
	for _, p := range strings.Split(v, ",") {
		if p == "" {
			return fmt.Errorf("partition list %q has an empty name", v)
		}
	}
	return nil
}

// checkAccount: one account. sbatch(1) calls it "an arbitrary string", but
// accounts live in the accounting database, whose tools (sacctmgr) take
// comma-separated lists, so no account name holds a comma.
func checkAccount(v string) error {
	if err := directiveValue("account", v); err != nil {
		return err
	}
	if strings.Contains(v, ",") {
		return fmt.Errorf("account %q contains ','; --account takes one account", v)
	}
	return nil
}

// checkOutput: the --output file name pattern (%j, %x, %N... are Slurm's).
func checkOutput(v string) error {
	if err := directiveValue("output", v); err != nil {
		return err
	}
	if strings.HasSuffix(v, "/") {
		return fmt.Errorf("output %q names a directory; give a file name pattern such as %q", v, v+"%x-%j.out")
	}
	return nil
}

// ParseTime checks a Slurm time limit and returns it in seconds; unlimited
// is true for UNLIMITED, INFINITE and 0 ("A time limit of zero requests
// that no time limit be imposed", sbatch(1)). The accepted forms are those
// of sbatch(1) --time: "minutes", "minutes:seconds",
// "hours:minutes:seconds", "days-hours", "days-hours:minutes" and
// "days-hours:minutes:seconds", with decimal digits only.
//
// Slurm's own parser (src/common/parse_time.c, time_str2secs) is looser:
// it takes "1-" as one day, "-5" as a huge limit and "1:75:00" as 2:15:00.
// ParseTime refuses those: minutes and seconds after a colon must be below
// 60 and hours after a day count below 24. Slurm rounds seconds up to whole
// minutes; the seconds returned here are not rounded.
func ParseTime(s string) (secs int, unlimited bool, err error) {
	bad := func(why string) (int, bool, error) {
		return 0, false, fmt.Errorf("--time %q: %s (use MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED)", s, why)
	}
	switch strings.ToUpper(s) {
	case "UNLIMITED", "INFINITE":
		return 0, true, nil
	case "":
		return bad("empty")
	}
	num := func(f string) (int, bool) {
		if f == "" || len(f) > 9 {
			return 0, false
		}
		for _, c := range f {
			if c < '0' || c > '9' {
				return 0, false
			}
		}
		n, err := strconv.Atoi(f)
		return n, err == nil
	}
	days, rest := 0, s
	hasDays := false
	if d, r, ok := strings.Cut(s, "-"); ok {
		n, ok := num(d)
		if !ok {
			return bad("the days before '-' must be a number")
		}
		days, rest, hasDays = n, r, true
	}
	fields := strings.Split(rest, ":")
	vals := make([]int, len(fields))
	for i, f := range fields {
		n, ok := num(f)
		if !ok {
			return bad(fmt.Sprintf("%q is not a number", f))
		}
		vals[i] = n
	}
	var h, m, sec int
	if hasDays {
		// D-HH, D-HH:MM, D-HH:MM:SS
		switch len(vals) {
		case 1:
			h = vals[0]
		case 2:
			h, m = vals[0], vals[1]
		case 3:
			h, m, sec = vals[0], vals[1], vals[2]
		default:
			return bad("too many ':'")
		}
		if h >= 24 {
			return bad("hours after the days must be below 24")
		}
	} else {
		// MM, MM:SS, HH:MM:SS
		switch len(vals) {
		case 1:
			m = vals[0]
		case 2:
			m, sec = vals[0], vals[1]
		case 3:
			h, m, sec = vals[0], vals[1], vals[2]
		default:
			return bad("too many ':'")
		}
	}
	if afterHours := (hasDays && len(vals) >= 2) || (!hasDays && len(vals) == 3); afterHours && m >= 60 {
		return bad("minutes after the hours must be below 60")
	}
	if sec >= 60 {
		return bad("seconds must be below 60")
	}
	total := ((days*24+h)*60+m)*60 + sec
	if total == 0 {
		return 0, true, nil
	}
	return total, false, nil
}

// MaxUsefulRanks is the largest number of ranks that all hold a context
// block when a context of contextTokens tokens (BOS included) is cut into
// blocks of blockSize: the number of blocks. star gives blocks to ranks as
// contiguous groups and a rank beyond the last block holds none; it still
// loads the whole model and takes part in every phase-2 merge, so it costs
// memory and time and adds nothing.
//
// blockSize <= 0 means star's default, the context divided evenly over the
// ranks (ceil(contextTokens/ranks) tokens a block): then up to
// contextTokens ranks can each hold a block, but not every count below
// that splits evenly (10 tokens over 6 ranks make blocks of 2: 5 blocks),
// which CheckRanks catches.
func MaxUsefulRanks(contextTokens, blockSize int) int {
	if contextTokens <= 0 {
		return 0
	}
	if blockSize <= 0 {
		return contextTokens
	}
	return (contextTokens + blockSize - 1) / blockSize
}

// CheckRanks reports an error when ranks (the job's tasks: nodes x
// tasks per node) is more than a context of contextTokens tokens in blocks
// of blockSize (<= 0: star's default, see MaxUsefulRanks) can use. It
// follows star's layout exactly (jobs.Settings.Layout, rank.NewLayout).
func CheckRanks(ranks, contextTokens, blockSize int) error {
	switch {
	case ranks <= 0:
		return fmt.Errorf("%d ranks: need at least one", ranks)
	case contextTokens <= 0:
		return fmt.Errorf("context of %d tokens: nothing to encode", contextTokens)
	}
	b := blockSize
	if b <= 0 {
		b = (contextTokens + ranks - 1) / ranks
	}
	blocks := (contextTokens + b - 1) / b
	if ranks <= blocks {
		return nil
	}
	how := fmt.Sprintf("a block size of %d", b)
	if blockSize <= 0 {
		how = fmt.Sprintf("the default block size (%d tokens over %d ranks: %d)", contextTokens, ranks, b)
	}
	fix := fmt.Sprintf("use at most %d tasks", blocks)
	if small := contextTokens / ranks; small >= 1 {
		fix += fmt.Sprintf(", or --block-size %d or less", small)
	}
	return fmt.Errorf("%d ranks but a context of %d tokens with %s makes only %d blocks: %d rank(s) would hold no block yet load the model and join every merge; %s",
		ranks, contextTokens, how, blocks, ranks-blocks, fix)
}
