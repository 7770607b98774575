"""Float64 references for the recurrent kernels (SimpleRNN, LSTM, GRU as Keras 3's cells,
implementation 1): one batch row and one step at a time, straight from the formulas; tests
only. Their finite differences are the references of the recurrent gradient kernels."""

from __future__ import annotations

import numpy as np

try:
    from tests import naive
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    import naive


def _act(v, name):
    return naive.naive_activation(v, name)


def _run(xproj, mask, zero_output, return_sequences, units, step, n_states):
    """Run `step(n, t, states) -> (h, states)` over every row and step with Keras's masking:
    a masked step keeps the states and outputs the kept h (or 0 with zero_output)."""
    xproj = np.asarray(xproj, np.float64)
    n_b, steps, _ = xproj.shape
    outputs = np.zeros((n_b, steps, units))
    for n in range(n_b):
        states = [np.zeros(units) for _ in range(n_states)]
        for t in range(steps):
            new = step(n, t, states)
            real = mask is None or bool(mask[n, t])
            if real:
                states = new
                outputs[n, t] = states[0]
            elif not zero_output:
                outputs[n, t] = states[0]
    return outputs if return_sequences else outputs[:, -1]


def _dropped(h, rdrop, g, n):
    return h if rdrop is None else h * np.asarray(rdrop, np.float64)[g, n]


def naive_simple_rnn(xproj, kernel, mask, activation, return_sequences, zero_output=False,
                     rdrop=None):
    """h = act(xproj_t + h_prev @ U)."""
    x = np.asarray(xproj, np.float64)
    u_mat = np.asarray(kernel, np.float64)

    def step(n, t, states):
        (h,) = states
        return [_act(x[n, t] + _dropped(h, rdrop, 0, n) @ u_mat, activation)]

    return _run(x, mask, zero_output, return_sequences, u_mat.shape[0], step, 1)


def naive_lstm(xproj, kernel, mask, activation, recurrent_activation, return_sequences,
               zero_output=False, rdrop=None):
    """z = xproj_t + h @ U (gates i, f, c, o); c = f c + i act(z_c); h = o act(c)."""
    x = np.asarray(xproj, np.float64)
    u_mat = np.asarray(kernel, np.float64)
    u = u_mat.shape[0]

    def step(n, t, states):
        h, c = states
        z = [x[n, t, g * u:(g + 1) * u] + _dropped(h, rdrop, g, n) @ u_mat[:, g * u:(g + 1) * u]
             for g in range(4)]
        i = _act(z[0], recurrent_activation)
        f = _act(z[1], recurrent_activation)
        g = _act(z[2], activation)
        o = _act(z[3], recurrent_activation)
        c_new = f * c + i * g
        return [o * _act(c_new, activation), c_new]

    return _run(x, mask, zero_output, return_sequences, u, step, 2)


def naive_gru(xproj, kernel, recurrent_bias, mask, activation, recurrent_activation,
              reset_after, return_sequences, zero_output=False, rdrop=None):
    """Gates z, r, h; h = z h_prev + (1 - z) hh; reset_after: hh = act(x_h + r (h U_h + b_h)),
    else hh = act(x_h + (r h) U_h) and no recurrent bias."""
    x = np.asarray(xproj, np.float64)
    u_mat = np.asarray(kernel, np.float64)
    u = u_mat.shape[0]
    bias = np.zeros(3 * u) if recurrent_bias is None else np.asarray(recurrent_bias, np.float64)

    def step(n, t, states):
        (h,) = states
        cols = [slice(g * u, (g + 1) * u) for g in range(3)]
        inner = [_dropped(h, rdrop, g, n) @ u_mat[:, cols[g]] for g in range(3)]
        if reset_after:
            inner = [inner[g] + bias[cols[g]] for g in range(3)]
        z = _act(x[n, t, cols[0]] + inner[0], recurrent_activation)
        r = _act(x[n, t, cols[1]] + inner[1], recurrent_activation)
        if reset_after:
            hh = _act(x[n, t, cols[2]] + r * inner[2], activation)
        else:
            hh = _act(x[n, t, cols[2]] + (r * _dropped(h, rdrop, 2, n)) @ u_mat[:, cols[2]],
                      activation)
        return [z * h + (1.0 - z) * hh]

    return _run(x, mask, zero_output, return_sequences, u, step, 1)
