"""Stateful test of the simulator against an independent memory and coherence model.

Rules grow a scenario step by step -- add a term (a support that cores will read and
write), add a core with its delay model, switch writes between atomic adds and non-atomic
read-modify-writes, change the coherence cost -- and *advance time* by simulating the
scenario for more epochs.  After every advance the invariants replay every memory
operation of the run, in the engine's own global operation order (``SimResult.order``),
against a plain Python model of shared memory and cache-line validity written from
``hwsim/model.py``'s rules:

* every read returns the model memory's value at that point;
* an atomic store adds its delta; an rmw store writes (value its read saw) + delta, and
  every store that landed between its read and its store is *lost*;
* the final model equals the replayed memory, bit for bit (fixed point);
* an access issued right after another access of the same sample costs its base cost plus
  the coherence cost exactly when another core stored to its line since this core last
  touched it;
* the two engines agree on everything (trace hash).
"""
from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import hwsim
from workload.problems import Terms, make_problem
from workload.spec import RunSpec

N_COORDS = 10
LINE = 4  # coordinates per cache line, so neighbouring coordinates share lines
READ_COST, WRITE_COST = 3, 5

delays = st.one_of(st.integers(0, 30).map(hwsim.Constant), st.floats(1.0, 40.0).map(hwsim.Exponential))


class SimulatorMachine(RuleBasedStateMachine):
    @initialize(support=st.lists(st.integers(0, N_COORDS - 1), min_size=1, max_size=4, unique=True),
                delay=delays)
    def start(self, support, delay):
        self.supports = [sorted(support)]
        self.delays = [delay]
        self.write_mode = "rmw"
        self.coherence = 7
        self.epochs = 0
        self.result = None

    @rule(support=st.lists(st.integers(0, N_COORDS - 1), min_size=1, max_size=4, unique=True))
    def add_term(self, support):
        self.supports.append(sorted(support))

    @precondition(lambda self: len(self.delays) < 3)
    @rule(delay=delays)
    def add_core(self, delay):
        self.delays.append(delay)

    @rule(mode=st.sampled_from(["atomic", "rmw"]))
    def set_write_mode(self, mode):
        self.write_mode = mode

    @rule(h=st.sampled_from([0, 7, 40]))
    def set_coherence(self, h):
        self.coherence = h

    @rule(more=st.integers(1, 2))
    def advance_time(self, more):
        """Simulate the scenario for ``more`` further epochs (the run so far is replayed too)."""
        self.epochs += more
        indptr = np.concatenate([[0], np.cumsum([len(s) for s in self.supports])])
        indices = np.concatenate([np.array(s) for s in self.supports])
        values = np.linspace(0.5, 1.5, indices.size)
        y = np.linspace(-1.0, 1.0, len(self.supports))
        self.problem = make_problem("least-squares", Terms(indptr, indices, values, y, N_COORDS), lam=0.1, reg="l2")
        cores = len(self.delays)
        self.spec = RunSpec(problem="least-squares", scheme="hogwild", threads=cores, epochs=self.epochs, step=0.1,
                            dtype="fixed", write_mode=self.write_mode, order="epoch-shuffle", seed=self.epochs)
        self.machine = hwsim.Machine(cores=cores, read_cost=READ_COST, write_cost=WRITE_COST,
                                     delay=tuple(self.delays), coherence_cost=self.coherence, line_coords=LINE)
        self.result = hwsim.simulate(self.spec, self.machine, problem=self.problem, engine="reference")
        self.fast = hwsim.simulate(self.spec, self.machine, problem=self.problem, engine="fast")

    @invariant()
    def engines_agree(self):
        if self.result is not None:
            assert hwsim.trace_hash(self.result) == hwsim.trace_hash(self.fast)

    @invariant()
    def memory_and_coherence_follow_the_model(self):
        if self.result is None:
            return
        r = self.result
        scale = 2.0 ** self.spec.fixed_point_bits
        co = r.coords.reset_index(drop=True)
        order = r.order.reset_index(drop=True)
        worker = r.samples.set_index("sample")["worker"]
        rmw = self.spec.write_mode == "rmw"  # the settings this result was simulated with
        H = self.machine.coherence_cost
        # One event list in global op order: (op, kind, row).
        events = [(int(order["read_op"][i]), "read", i) for i in range(len(co))]
        events += [(int(order["write_op"][i]), "store", i) for i in range(len(co))]
        if rmw:
            events += [(int(order["wread_op"][i]), "wread", i) for i in range(len(co))]
        events.sort()
        assert [op for op, _, _ in events] == list(range(len(events)))  # ops are a gap-free sequence
        mem = {j: int(v) for j, v in enumerate(r.x0)}
        valid = {line: set(range(self.machine.cores)) for line in range(N_COORDS // LINE + 1)}
        old, lost = {}, set()
        landed = {j: [] for j in range(N_COORDS)}  # rows whose stores landed, per coordinate, with their op
        sample_rows = co.groupby("sample").indices
        expected_miss = {}

        def core_of(row):
            return int(worker[int(co["sample"][row])])

        def next_row(row):
            rows = sample_rows[int(co["sample"][row])]
            pos = int(np.flatnonzero(rows == row)[0])
            return int(rows[pos + 1]) if pos + 1 < rows.size else None

        def miss(core, j):
            return 0 if (H == 0 or core in valid[j // LINE]) else H

        for op, kind, row in events:
            j, c = int(co["coord"][row]), core_of(row)
            if kind == "read":
                assert int(round(co["read_value"][row] * scale)) == mem[j], f"read of row {row} saw a stale model"
                valid[j // LINE].add(c)
                nxt = next_row(row)
                if nxt is not None:  # the next read is issued in this event, after the touch
                    expected_miss[("read", nxt)] = miss(c, int(co["coord"][nxt]))
            elif kind == "wread":  # the write is issued in this event, just before its own read
                expected_miss.setdefault(("write", row), miss(c, j))
                old[row] = (mem[j], op)
                valid[j // LINE].add(c)
            else:
                d = int(round(co["delta"][row] * scale))
                if rmw:
                    base, rop = old[row]
                    for other, sop in landed[j]:
                        if sop > rop and other not in lost:
                            lost.add(other)
                    mem[j] = base + d
                else:
                    mem[j] += d
                landed[j].append((row, op))
                valid[j // LINE] = {c}
                nxt = next_row(row)
                if nxt is not None:  # the next write is issued in this event, after this store
                    expected_miss[("write", nxt)] = miss(c, int(co["coord"][nxt]))
        assert np.array_equal(np.array([mem[j] for j in range(N_COORDS)], dtype=np.int64), r.x)
        assert set(np.flatnonzero(co["lost"].to_numpy())) == lost
        assert r.lost_updates == len(lost)
        write_start = r.samples.set_index("sample")["t_write_start"]
        for (kind, row), m in expected_miss.items():
            first = row == sample_rows[int(co["sample"][row])][0]  # rows of a sample are consecutive
            if kind == "read":
                cost = int(co["read_tick"][row] - co["read_tick"][row - 1])
                assert cost == READ_COST + m, f"read row {row}: cost {cost}, model {READ_COST}+{m}"
            else:
                begin = int(write_start[int(co["sample"][row])]) if first else int(co["write_tick"][row - 1])
                cost = int(co["write_tick"][row]) - begin
                assert cost == WRITE_COST + m, f"write row {row}: cost {cost}, model {WRITE_COST}+{m}"

    @invariant()
    def counters_are_consistent(self):
        if self.result is None:
            return
        s = self.result.samples
        n = len(s)
        assert sorted(s.start_seq) == list(range(n)) and sorted(s.end_seq) == list(range(n))
        assert (s.finished_at_start <= s.start_seq).all() and (s.started_at_end > s.start_seq).all()
        assert (s.t_start <= s.t_read_done).all() and (s.t_read_done <= s.t_write_start).all()
        assert (s.t_write_start <= s.t_end).all()


SimulatorMachine.TestCase.settings = settings(stateful_step_count=10)  # examples: the active profile
TestSimulatorStateful = SimulatorMachine.TestCase
