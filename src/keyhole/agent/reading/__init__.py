"""Reading application state without running application code: safe access, the expression evaluator,
decimals, and the bounded capture and formatting of values, frames and stacks.
"""
