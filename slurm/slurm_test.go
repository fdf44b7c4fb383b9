package slurm

import "testing"

func TestDetect(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		ok      bool
		wantErr bool
		want    Env
	}{
		{"outside slurm", map[string]string{}, false, false, Env{}},
		{"task", map[string]string{"SLURM_JOB_ID": "42", "SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURMD_NODENAME": "n1"},
			true, false, Env{JobID: "42", ProcID: 3, NTasks: 8, LocalID: 1, Node: "n1"}},
		{"defaults", map[string]string{"SLURM_JOB_ID": "7"}, true, false, Env{JobID: "7", NTasks: 1}},
		{"bad number", map[string]string{"SLURM_JOB_ID": "7", "SLURM_PROCID": "x"}, true, true, Env{}},
		{"rank beyond tasks", map[string]string{"SLURM_JOB_ID": "7", "SLURM_PROCID": "4", "SLURM_NTASKS": "4"}, true, true, Env{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, ok, err := detect(func(k string) string { return c.env[k] })
			if ok != c.ok || (err != nil) != c.wantErr {
				t.Fatalf("ok=%v err=%v, want ok=%v err=%v", ok, err, c.ok, c.wantErr)
			}
			if !c.wantErr && e != c.want {
				t.Fatalf("got %+v, want %+v", e, c.want)
			}
		})
	}
}
