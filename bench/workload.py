"""The code the benchmark probes: a function with five locals, called in a tight loop, and a copy of it
that no probe ever touches (the "unrelated code")."""


def step(i):
    a = i
    b = i + 1
    c = "x"
    d = [i]
    e = {"k": i}
    return a  # PROBED


def hot(n):
    for i in range(n):
        step(i)


def other_step(i):
    a = i
    b = i + 1
    c = "x"
    d = [i]
    e = {"k": i}
    return a


def unrelated(n):
    for i in range(n):
        other_step(i)


def elsewhere(x):
    y = x + 1  # PROBED-ELSEWHERE
    return y


def probed_line():
    with open(__file__) as handle:
        for number, line in enumerate(handle, start=1):
            if line.rstrip().endswith("# PROBED"):
                return number
    raise AssertionError("marker missing")


def elsewhere_line():
    with open(__file__) as handle:
        for number, line in enumerate(handle, start=1):
            if "# PROBED-ELSEWHERE" in line:
                return number
    raise AssertionError("marker missing")
