def is_even(n):
    return n % 2 == 0


def average(values):
    total = sum(values)
    return 
