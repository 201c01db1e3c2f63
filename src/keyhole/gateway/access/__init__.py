"""What a caller may do: the policy file, the permissions a user's roles add up to, just-in-time
approvals, and putting a new policy in force.
"""
